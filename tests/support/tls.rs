//! A verifying TLS client for promfed's webhook port (rustls with ring): HTTP/1.1 POSTs to
//! `/mutate`, one per connection or several on a kept connection, each answer with the leaf
//! certificate the server presented.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use super::serve::NAME;

#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// What one request got.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The leaf certificate the server presented.
    pub leaf: CertificateDer<'static>,
}

impl Answer {
    /// The `response` of a 200 answer.
    pub fn response(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        let review: Value = serde_json::from_slice(&self.body).expect("a 200 answer is JSON");
        review["response"].clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Client {
    /// Trusts the CAs in `ca_pems`, expects [`NAME`], TLS 1.2 or 1.3, no session resumption
    /// (every connection shows the certificate a new client gets).
    pub fn new(ca_pems: &[&str]) -> Client {
        Client::named(ca_pems, NAME)
    }

    /// [`Client::new`] expecting the server name `name`.
    pub fn named(ca_pems: &[&str], name: &str) -> Client {
        Client::build(
            ca_pems,
            name,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            None,
        )
    }

    /// Trusts `ca_pems`, expects `name`, speaks `versions`, presents `identity` (certificate and
    /// key PEM) when given.
    pub fn build(
        ca_pems: &[&str],
        name: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
        identity: Option<(&str, &str)>,
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for pem in ca_pems {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .expect("client certificate PEM"),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key PEM"),
                )
                .expect("client identity"),
        };
        // Full handshakes only: a resumed session shows the certificate of the session it
        // resumes, and the certificate tests need to see what a new client gets.
        config.resumption = rustls::client::Resumption::disabled();
        Client {
            config: Arc::new(config),
            name: ServerName::try_from(name.to_string()).expect("a server name"),
        }
    }

    /// A client with its own rustls config (client certificates, ALPN), expecting [`NAME`].
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Client {
        Client {
            config,
            name: ServerName::try_from(NAME).unwrap(),
        }
    }

    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<Conn> {
        self.over(TcpStream::connect(addr)?)
    }

    /// A TLS connection over `tcp`, e.g. one from another source address
    /// (`support::attack::connect_from`).
    pub fn over(&self, tcp: TcpStream) -> std::io::Result<Conn> {
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_nodelay(true)?;
        let tls = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(std::io::Error::other)?;
        Ok(Conn {
            tls: rustls::StreamOwned::new(tls, tcp),
            buf: Vec::new(),
        })
    }

    /// POST `body` to /mutate on a connection of its own.
    pub fn post(&self, addr: SocketAddr, body: &[u8]) -> std::io::Result<Answer> {
        self.connect(addr)?.request(body, true)
    }

    pub fn post_json(&self, addr: SocketAddr, review: &Value) -> std::io::Result<Answer> {
        self.post(addr, &serde_json::to_vec(review).unwrap())
    }
}

/// A TLS connection that can carry several requests (HTTP/1.1 keep-alive).
pub struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// POST `body` to /mutate and read the answer. The body goes in 64 KiB pieces; if the
    /// server stops reading (a 413 answered early), the answer is still read.
    pub fn request(&mut self, body: &[u8], close: bool) -> std::io::Result<Answer> {
        self.send(&request_head(body.len(), close))?;
        let mut write_error = None;
        for piece in body.chunks(64 * 1024) {
            if let Err(e) = self.send(piece) {
                write_error = Some(e);
                break;
            }
        }
        match self.answer() {
            Ok(answer) => Ok(answer),
            Err(e) => Err(write_error.unwrap_or(e)),
        }
    }

    /// Read one response.
    pub fn answer(&mut self) -> std::io::Result<Answer> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut eof = false;
        loop {
            if let Some((status, body, used)) = parse_response_at_eof(&self.buf, eof) {
                self.buf.drain(..used);
                let leaf = self
                    .tls
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .expect("server certificate")
                    .clone()
                    .into_owned();
                return Ok(Answer { status, body, leaf });
            }
            if eof {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} bytes of response",
                        self.buf.len()
                    ),
                ));
            }
            match self.read_some(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A peer that closes without close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Read one interim (1xx) response, e.g. the `100 Continue` a server sends once its handler
    /// reads the body of a request that asked with `Expect: 100-continue`; its status.
    pub fn interim(&mut self) -> std::io::Result<u16> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
                return match status {
                    Some(status @ 100..=199) => {
                        self.buf.drain(..end + 4);
                        Ok(status)
                    }
                    _ => Err(std::io::Error::other(format!(
                        "not an interim response: {head:?}"
                    ))),
                };
            }
            match self.read_some(&mut chunk)? {
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before an interim response",
                    ));
                }
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read decrypted bytes without writing anything first. (`StreamOwned::read` flushes
    /// pending TLS writes before reading; after a server answered early and stopped reading,
    /// that write fails and the answer, already received, would be lost.)
    fn read_some(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut closed = false;
        loop {
            match self.tls.conn.reader().read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && closed => return Ok(0),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.tls.conn.read_tls(&mut self.tls.sock)? == 0 {
                closed = true;
            }
            self.tls
                .conn
                .process_new_packets()
                .map_err(std::io::Error::other)?;
        }
    }
}

pub fn request_head(length: usize, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "POST /mutate HTTP/1.1\r\nHost: {NAME}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

/// (status, body, bytes used) of the first complete response in `raw`; a response without
/// Content-Length ends at EOF.
pub fn parse_response_at_eof(raw: &[u8], eof: bool) -> Option<(u16, Vec<u8>, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let length = match length {
        Some(length) => length,
        None if eof => raw.len() - end - 4,
        None => return None,
    };
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some((status, body, end + 4 + length))
}

pub fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>, usize)> {
    parse_response_at_eof(raw, true)
}
