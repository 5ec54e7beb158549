//! The hostile neighbour's side of the attack tests (`tests/it/attacks.rs`): the sizes (scaled
//! to the suite, or full size for `scripts/attack-probe.sh`), connections from attacker
//! addresses (127.0.0.2 and up), TLS handshakes left as they are, connections held open, and
//! the server under attack with the checks that it recovered.

use std::ffi::OsString;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use super::serve::{Files, NAME, Server};
use super::tls::provider;
use super::well_behaved::{judge, well_behaved_body};

/// The webhook's `timeoutSeconds` (deploy/base/mutatingwebhookconfiguration.yaml): the API
/// server gives up on an answer after this long.
pub const TIMEOUT_SECONDS: Duration = Duration::from_secs(5);
/// The Deployment's memory limit.
pub const POD_LIMIT_MIB: f64 = 128.0;

/// Whether the attacks run at the full size against promfed's own limits, as
/// `scripts/attack-probe.sh` runs them (`PROMFED_ATTACKS_FULL=1`, release binary), instead of
/// scaled to the suite.
pub fn full_size() -> bool {
    std::env::var_os("PROMFED_ATTACKS_FULL").is_some_and(|v| v == "1")
}

/// `scaled` in the suite, `full` for the probe.
pub fn size(scaled: usize, full: usize) -> usize {
    if full_size() { full } else { scaled }
}

/// Flags that scale promfed's limits down for the suite; none at full size (the defaults, as
/// deployed).
pub fn scaled<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    if full_size() {
        Vec::new()
    } else {
        flags.to_vec()
    }
}

/// How often each well-behaved client sends a review: 4 a second in the suite, 10 for the
/// probe (the rate).
pub fn pace() -> Duration {
    Duration::from_millis(size(250, 100) as u64)
}

/// One line of the probe's report (`scripts/attack-probe.sh` collects them).
pub fn report(line: String) {
    eprintln!("PROBE {line}");
}

// ---------------------------------------------------------------------------------------
// Addresses and raw connections

/// The `n`th attacker address: 127.0.0.2, 127.0.0.3, ...
pub fn attacker(n: usize) -> Ipv4Addr {
    assert!(n < 250, "attacker address {n}");
    Ipv4Addr::new(127, 0, 0, 2 + n as u8)
}

/// Whether the server has closed `tcp` (checked without blocking or consuming anything).
pub fn closed_by_peer(tcp: &TcpStream) -> bool {
    let _ = tcp.set_nonblocking(true);
    let peeked = tcp.peek(&mut [0u8; 1]);
    let _ = tcp.set_nonblocking(false);
    match peeked {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A TCP connection to `addr` from `source`.
pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddrV4::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let tcp: TcpStream = socket.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(tcp)
}

/// A client certificate chain (the client's own first) and its key, PEM.
#[derive(Clone)]
pub struct Identity {
    pub chain_pem: String,
    pub key_pem: String,
}

/// A client config trusting `ca_pem`, offering `alpn`.
pub fn tls_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    tls_config_as(ca_pem, alpn, None)
}

/// [`tls_config`], presenting `identity`.
pub fn tls_config_as(
    ca_pem: &str,
    alpn: &[&[u8]],
    identity: Option<&Identity>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(identity.chain_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap(),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
                    .unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A finished TLS handshake from `source`, left as it is.
pub fn tls_from(
    config: &Arc<rustls::ClientConfig>,
    source: Ipv4Addr,
    addr: SocketAddr,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut tcp = connect_from(source, addr)?;
    let mut tls =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from(NAME).unwrap())
            .map_err(std::io::Error::other)?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(tls, tcp))
}

// ---------------------------------------------------------------------------------------
// The server under attack

/// `promfed serve` with the test files and `extra` flags.
pub fn server(files: &Files, extra: &[&str]) -> Server {
    let args: Vec<OsString> = files
        .args()
        .into_iter()
        .chain(extra.iter().map(OsString::from))
        .collect();
    Server::start(&args, &[])
}

/// A sample of /metrics with its labels, e.g. `promfed_connections{listener="https"}`.
pub fn metric(server: &Server, series: &str) -> f64 {
    server.metric(series)
}

pub fn closed(server: &Server, listener: &str, reason: &str) -> f64 {
    metric(
        server,
        &format!("promfed_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}}"),
    )
}

/// After an attack: memory under the limit, and a fresh review answered correctly.
pub fn assert_restored(server: &Server, files: &Files, what: &str) {
    let memory = server.memory();
    report(format!("{what}: peak RSS {:.1} MiB", memory.hwm_mib()));
    assert!(
        memory.hwm_mib() < POD_LIMIT_MIB,
        "{what}: peak RSS {:.1} MiB",
        memory.hwm_mib()
    );
    let answer = files
        .client()
        .post(server.https, &well_behaved_body(99, 0))
        .expect("answered after the attack");
    judge(answer.status, &answer.body).unwrap_or_else(|e| panic!("{what}: after the attack: {e}"));
    assert_eq!(
        server.metric("promfed_internal_errors_total"),
        0.0,
        "{what}"
    );
}

/// Keep opening connections with `open` from the attacker addresses `addresses`, holding
/// every one still open (checked with `tcp`), until `count` were opened; returns how many
/// were opened and those still held.
pub fn hold<T: Send + 'static>(
    count: usize,
    addresses: std::ops::Range<usize>,
    open: impl Fn(Ipv4Addr) -> std::io::Result<T> + Send + Sync + 'static,
    closed: fn(&mut T) -> bool,
) -> std::thread::JoinHandle<(usize, Vec<T>)> {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut opened = 0;
        for n in 0..count {
            if let Ok(conn) = open(attacker(addresses.start + n % addresses.len())) {
                held.push(conn);
                opened += 1;
            }
            // The client's own descriptors are bounded too.
            if n % 512 == 511 {
                held.retain_mut(|c| !closed(c));
            }
        }
        (opened, held)
    })
}

/// Whether the server has closed a TLS connection (its close_notify or FIN arrived),
/// checked without blocking.
pub fn tls_closed(tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> bool {
    let _ = tls.sock.set_nonblocking(true);
    let closed = loop {
        match tls.conn.read_tls(&mut tls.sock) {
            Ok(0) => break true,
            Ok(_) => {
                if tls.conn.process_new_packets().is_err() {
                    break true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    let _ = tls.sock.set_nonblocking(false);
    closed || matches!(tls.conn.reader().read(&mut [0u8; 1]), Ok(0))
}

pub fn tcp_closed(tcp: &mut TcpStream) -> bool {
    closed_by_peer(tcp)
}
