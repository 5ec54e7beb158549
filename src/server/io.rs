//! The transport under hyper: the socket taken back from hyper once a connection's requests
//! are done, the lingering close, and answer bodies that hold resources until they are sent.
//!
//! Lingering close, as nginx does it: a client that writes its whole body before reading the
//! answer (Python's http.client, Go's net/http, curl without `Expect`) would lose the 413 if
//! the connection were simply closed with request bytes still unread, because the kernel
//! then answers with a reset that discards what the client has not read yet. So the answer
//! is sent, the write side shut (TLS close_notify, then FIN), and what the client still
//! sends is read and thrown away, raw, without decrypting it, for a bounded time and amount.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Longest a lingering close reads what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// A lingering close ends when the client has sent nothing for this long.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
/// Most bytes a lingering close reads (and throws away): a few times the largest body.
pub const LINGER_BYTES: usize = 32 * 1024 * 1024;
/// How long shutting the write side may take before the lingering close gives up.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// A transport that can be taken apart into its TCP socket once the write side is shut.
pub trait IntoTcp: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn into_tcp(self) -> TcpStream;
}

impl IntoTcp for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl IntoTcp for tokio_rustls::server::TlsStream<TcpStream> {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }
}

/// An IO that hands itself back through a channel when dropped, so that the connection's
/// task gets the socket back from hyper for a lingering close.
pub struct Returning<T> {
    io: Option<T>,
    back: Option<oneshot::Sender<T>>,
}

impl<T> Returning<T> {
    pub fn new(io: T) -> (Returning<T>, oneshot::Receiver<T>) {
        let (back, returned) = oneshot::channel();
        (
            Returning {
                io: Some(io),
                back: Some(back),
            },
            returned,
        )
    }

    fn io(&mut self) -> io::Result<&mut T> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T> Drop for Returning<T> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // Nobody waiting (the task is gone): the socket just closes.
            let _ = back.send(io);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Returning<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Returning<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Shut the write side (after whatever hyper already sent) and read what the client still
/// sends until it closes, pauses for [`LINGER_IDLE`], or [`LINGER_TIME`] or
/// [`LINGER_BYTES`] run out. Returns the bytes thrown away.
pub async fn linger(mut io: impl IntoTcp) -> usize {
    // Sends TLS close_notify (once) and FIN; a client that reads nothing cannot stall it.
    let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, io.shutdown()).await;
    let mut tcp = io.into_tcp();
    let started = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut discarded = 0usize;
    loop {
        let wait = LINGER_TIME
            .saturating_sub(started.elapsed())
            .min(LINGER_IDLE);
        if wait.is_zero() || discarded >= LINGER_BYTES {
            break;
        }
        match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
    discarded
}

/// A response body that keeps `T` alive until the body is sent (or dropped).
pub struct Held<B, T> {
    body: B,
    _held: T,
}

impl<B, T> Held<B, T> {
    pub fn new(body: B, held: T) -> Held<B, T> {
        Held { body, _held: held }
    }
}

impl<B: HttpBody + Unpin, T: Unpin> HttpBody for Held<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lingering_close_reads_until_the_client_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            // Write everything first (more than the socket buffers hold), then read.
            tcp.write_all(&vec![b'x'; 4 * 1024 * 1024]).await.unwrap();
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await.unwrap();
            answer
        });
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"413").await.unwrap();
        let (io, back) = Returning::new(server);
        drop(io);
        let discarded = linger(back.await.unwrap()).await;
        assert_eq!(client.await.unwrap(), b"413");
        assert_eq!(discarded, 4 * 1024 * 1024);
    }
}
