//! `promfed serve --dev`: everything a local try-out needs, made at start in a temp dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The example AdmissionReview shipped in the repository (the TKG ConfigMap being created).
pub const EXAMPLE_REVIEW: &str = include_str!("../../tests/data/review-tkg.json");

/// A throw-away CA and a serving certificate it signed, all PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// A new CA and a leaf for `names` (DNS names or IP addresses), valid for a year.
    pub fn generate(names: &[&str]) -> anyhow::Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "promfed development CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut leaf = CertificateParams::new(names.clone())?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Strict verifiers (Python 3.13's default, OpenSSL X509_STRICT) require it.
        leaf.use_authority_key_identifier_extension = true;
        // From yesterday (clock skew) to a year from now.
        let (year, month, day) = civil_date(unix_days() - 1);
        leaf.not_before = rcgen::date_time_ymd(year, month, day);
        leaf.not_after = rcgen::date_time_ymd(year + 1, month, day.min(28));
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn unix_days() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// (year, month, day) of a day number since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// The files of a `--dev` run; the directory is removed when this is dropped.
#[derive(Debug)]
pub struct DevFiles {
    dir: tempfile::TempDir,
    pub config: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub review: PathBuf,
}

impl DevFiles {
    /// Write the embedded example config, a fresh CA + certificate (for `localhost`,
    /// `127.0.0.1`, the in-cluster name and the listen address) and the example review.
    pub fn create(listen: SocketAddr) -> anyhow::Result<DevFiles> {
        let dir = tempfile::Builder::new()
            .prefix("promfed-dev-")
            .tempdir()
            .context("creating the --dev temp dir")?;
        let ip = listen.ip().to_string();
        let mut names = vec!["localhost", "127.0.0.1", "promfed.promfed-system.svc"];
        if !listen.ip().is_unspecified() && !names.contains(&ip.as_str()) {
            names.push(&ip);
        }
        let pki = Pki::generate(&names)?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        Ok(DevFiles {
            config: write("promfed.yaml", crate::config::EXAMPLE)?,
            cert: write("tls.crt", &pki.cert_pem)?,
            key: write("tls.key", &pki.key_pem)?,
            ca: write("ca.crt", &pki.ca_pem)?,
            review: write("review-tkg.json", EXAMPLE_REVIEW)?,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What to paste into a shell to try the webhook. `config` is the config file in use:
    /// this run's own copy of the example, or the one `--config` named.
    pub fn banner(&self, config: &Path, https: SocketAddr, metrics: SocketAddr) -> String {
        let host = |addr: SocketAddr| {
            if addr.ip().is_unspecified() || addr.ip().is_loopback() {
                format!("localhost:{}", addr.port())
            } else {
                addr.to_string()
            }
        };
        let dir = self.dir().display();
        format!(
            "promfed serve --dev: files in {dir} (removed at exit)\n\
             \x20 config       {config}  (edit it: it is reloaded within a second)\n\
             \x20 certificate  {cert}, CA {ca}\n\
             \n\
             Send the example AdmissionReview (the TKG prometheus-server ConfigMap):\n\
             \n\
             \x20 curl -sS --cacert {ca} -H 'Content-Type: application/json' \\\n\
             \x20      --data-binary @{review} https://{https}/mutate\n\
             \n\
             and see the patch:\n\
             \n\
             \x20 curl -sS --cacert {ca} -H 'Content-Type: application/json' \\\n\
             \x20      --data-binary @{review} https://{https}/mutate \\\n\
             \x20   | python3 -c 'import base64,json,sys; r=json.load(sys.stdin)[\"response\"]; print(json.dumps(json.loads(base64.b64decode(r[\"patch\"])), indent=1) if \"patch\" in r else r)'\n\
             \n\
             Metrics: curl -s http://{metrics}/metrics\n",
            config = config.display(),
            cert = self.cert.display(),
            ca = self.ca.display(),
            review = self.review.display(),
            https = host(https),
            metrics = host(metrics),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tls::ServingCert;

    #[test]
    fn generated_certificate_loads_and_names_its_hosts() {
        let pki = Pki::generate(&["promfed.promfed-system.svc", "127.0.0.1"]).unwrap();
        let cert = ServingCert::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
        assert_eq!(cert.names, ["promfed.promfed-system.svc", "127.0.0.1"]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(cert.not_after > now + 300 * 24 * 3600, "{}", cert.not_after);
    }

    #[test]
    fn the_banner_names_the_config_in_use() {
        let listen: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let files = DevFiles::create(listen).unwrap();
        let own = files.banner(&files.config, listen, listen);
        assert!(
            own.contains(&format!("config       {}", files.config.display())),
            "{own}"
        );
        let mine = Path::new("/srv/mine/promfed.yaml");
        let given = files.banner(mine, listen, listen);
        assert!(
            given.contains("config       /srv/mine/promfed.yaml  (edit it"),
            "{given}"
        );
        assert!(
            !given.contains(&files.config.display().to_string()),
            "{given}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_454), (2026, 1, 1));
    }

    #[test]
    fn a_key_from_another_pair_is_refused() {
        let a = Pki::generate(&["a"]).unwrap();
        let b = Pki::generate(&["b"]).unwrap();
        let err = ServingCert::from_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn example_review_is_the_tkg_configmap() {
        let review: serde_json::Value = serde_json::from_str(EXAMPLE_REVIEW).unwrap();
        assert_eq!(
            review["request"]["object"]["metadata"]["name"],
            "prometheus-server"
        );
        assert!(review["request"]["object"]["data"]["prometheus.yml"].is_string());
    }
}
