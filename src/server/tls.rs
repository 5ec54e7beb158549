//! TLS: rustls (ring), TLS 1.2 and 1.3, a serving certificate that can be swapped while
//! connections keep being accepted, optional client-certificate verification.
//!
//! Client certificates (`--client-ca-file`) are verified with a bound and off the async
//! workers: a chain of more than [`MAX_CLIENT_INTERMEDIATES`] certificates besides the
//! client's own is refused before any signature is checked (a 21-certificate looping chain
//! cost 0.2–0.4 s of CPU per handshake), and the handshakes run on a runtime of their own
//! (one thread, `promfed-tls`), so that verifying cannot stall the requests in flight. The
//! CA file is reloaded like the serving certificate: every new handshake uses the current
//! [`ServerConfig`].

use std::fmt;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use arc_swap::ArcSwap;
use rustls::DigitallySignedStruct;
use rustls::DistinguishedName;
use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The crypto provider promfed uses everywhere: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process-wide default provider (a no-op if one is installed already).
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A serving certificate ready for rustls, with what the metrics and logs say about it.
pub struct ServingCert {
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf, seconds since the Unix epoch.
    pub not_after: i64,
    /// Subject alternative names of the leaf, for the log line.
    pub names: Vec<String>,
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// Parse a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1), and check
    /// that the key belongs to the leaf.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<ServingCert> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("certificate file is not PEM")?;
        let Some(leaf) = chain.first() else {
            bail!("certificate file holds no CERTIFICATE block");
        };
        let (not_after, names) = describe_leaf(leaf)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).context("key file holds no PEM private key")?;
        let signer = provider()
            .key_provider
            .load_private_key(key)
            .context("private key not usable")?;
        let certified = CertifiedKey::new(chain, signer);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => return Err(anyhow!("private key does not match the certificate: {e}")),
        }
        Ok(ServingCert {
            key: Arc::new(certified),
            not_after,
            names,
        })
    }
}

/// notAfter and DNS/IP names of a DER certificate.
fn describe_leaf(der: &CertificateDer<'_>) -> anyhow::Result<(i64, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow!("certificate is not valid X.509: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok((not_after, names))
}

/// Hands rustls whatever certificate is current; [`CertResolver::store`] swaps it for every
/// handshake that starts afterwards.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(cert: &ServingCert) -> CertResolver {
        CertResolver {
            current: ArcSwap::new(cert.key.clone()),
        }
    }

    pub fn store(&self, cert: &ServingCert) {
        self.current.store(cert.key.clone());
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Most certificates a client may present besides its own. A client certificate is signed by
/// the client CA or one intermediate of it; 3 leave room for deeper PKIs.
pub const MAX_CLIENT_INTERMEDIATES: usize = 3;

/// Refuses a client's chain that is too long before the verifier it wraps checks anything.
#[derive(Debug)]
struct BoundedVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for BoundedVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if intermediates.len() > MAX_CLIENT_INTERMEDIATES {
            return Err(rustls::Error::General(format!(
                "client certificate chain of {} certificates besides the client's; at most \
                 {MAX_CLIENT_INTERMEDIATES} are accepted",
                intermediates.len()
            )));
        }
        let started = std::time::Instant::now();
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        tracing::debug!(
            intermediates = intermediates.len(),
            verified = verified.is_ok(),
            micros = started.elapsed().as_micros() as u64,
            "client certificate checked"
        );
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls server config: TLS 1.2+, h2 and http/1.1, the reloading resolver, and client
/// certificates required when `client_ca_pem` is given (chains bounded, see
/// [`MAX_CLIENT_INTERMEDIATES`]).
pub fn server_config(
    resolver: Arc<CertResolver>,
    client_ca_pem: Option<&[u8]>,
) -> anyhow::Result<ServerConfig> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.context("client CA file is not PEM")?;
                roots.add(cert).context("client CA certificate")?;
            }
            if roots.is_empty() {
                bail!("client CA file holds no CERTIFICATE block");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(Arc::new(BoundedVerifier { inner: verifier }))
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS on accepted connections, for [`super::conn::serve`]: the current config (swapped when
/// the client CA file changes), and where handshakes run.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ArcSwap<ServerConfig>>,
    /// The runtime handshakes run on when clients must present certificates (verifying them
    /// costs CPU); `None`: on the caller's.
    pub handshakes: Option<tokio::runtime::Handle>,
}

impl super::conn::Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Io> {
        let acceptor = TlsAcceptor::from(self.config.load_full());
        match &self.handshakes {
            None => acceptor.accept(tcp).await,
            Some(runtime) => AbortOnDrop(runtime.spawn(acceptor.accept(tcp))).await,
        }
    }
}

/// A task on another runtime, aborted when the connection gives up on it (evicted, timed
/// out): its socket is closed then, not left to the other runtime.
struct AbortOnDrop<T>(tokio::task::JoinHandle<std::io::Result<T>>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::io::Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|e| Err(std::io::Error::other(e))))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime client-certificate handshakes run on: one thread, `promfed-tls`. Shut down
/// without waiting when dropped (dropping a runtime inside another would panic).
#[derive(Debug)]
pub struct HandshakeRuntime(Option<tokio::runtime::Runtime>);

impl HandshakeRuntime {
    pub fn start() -> anyhow::Result<HandshakeRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("promfed-tls")
            .enable_all()
            .build()
            .context("starting the TLS handshake runtime")?;
        Ok(HandshakeRuntime(Some(runtime)))
    }

    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for HandshakeRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
