//! TLS: rustls (ring), TLS 1.2 and 1.3, a serving certificate that can be swapped while
//! connections keep being accepted, optional client-certificate verification.

use std::fmt;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
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

/// The rustls server config: TLS 1.2+, h2 and http/1.1, the reloading resolver, and client
/// certificates required when `client_ca_pem` is given.
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
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS on accepted connections, for [`super::conn::serve`].
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
}

impl super::conn::Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Io> {
        self.acceptor.accept(tcp).await
    }
}
