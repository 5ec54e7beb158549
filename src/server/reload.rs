//! Reloading files that change under a running server.
//!
//! Polling, not inotify: Kubernetes updates a mounted Secret or ConfigMap by swapping the
//! `..data` symlink, so the watched files are never written and their own mtime never changes.
//! Every poll reads the files through their paths (following the symlinks) and compares the
//! *content* with what was seen last; only a difference triggers a load. A load that fails is
//! remembered too, so a broken file is reported once, not every second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::tls::{CertResolver, ServingCert, server_config};
use super::{AppState, printable};
use crate::Engine;
use crate::admission::Admission;
use crate::redact::withhold_values;

/// Files that are loaded together (a certificate and its key): a change to any is one change.
#[derive(Debug)]
pub struct Watched {
    paths: Vec<PathBuf>,
    seen: [u8; 32],
    last_error: Option<String>,
}

/// What a poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Unchanged,
    /// New contents, one per path, in order.
    Changed(Vec<Vec<u8>>),
    /// A file could not be read (reported once per distinct error).
    Unreadable(String),
}

impl Watched {
    /// Start watching `paths`, whose current contents (already loaded) are `contents`.
    pub fn new(paths: Vec<PathBuf>, contents: &[Vec<u8>]) -> Watched {
        Watched {
            paths,
            seen: digest(contents),
            last_error: None,
        }
    }

    pub async fn poll(&mut self) -> Poll {
        let mut contents = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            match tokio::fs::read(path).await {
                Ok(bytes) => contents.push(bytes),
                Err(e) => {
                    let error = format!("reading {}: {e}", path.display());
                    if self.last_error.as_ref() == Some(&error) {
                        return Poll::Unchanged;
                    }
                    self.last_error = Some(error.clone());
                    return Poll::Unreadable(error);
                }
            }
        }
        self.last_error = None;
        let hash = digest(&contents);
        if hash == self.seen {
            return Poll::Unchanged;
        }
        self.seen = hash;
        Poll::Changed(contents)
    }
}

fn digest(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for content in contents {
        hash.update((content.len() as u64).to_le_bytes());
        hash.update(content);
    }
    hash.finalize().into()
}

/// Parse a config file into an engine.
pub fn load_engine(text: &[u8]) -> anyhow::Result<Engine> {
    let text = std::str::from_utf8(text).map_err(|_| anyhow::anyhow!("config is not UTF-8"))?;
    let config = crate::Config::from_yaml(text)?;
    Ok(Engine::new(config)?)
}

/// Poll `watched` every `every` until stopped, handing each change or read failure to `on`.
async fn poll_until_stopped(
    mut watched: Watched,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut on: impl FnMut(Poll),
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = super::stopped(&mut stop) => return,
        }
        match watched.poll().await {
            Poll::Unchanged => {}
            poll => on(poll),
        }
    }
}

/// Poll the config file; a good new config replaces the engine (and empties the cache), a bad
/// one is logged and counted and the last good config stays.
pub async fn watch_config(
    state: AppState,
    watched: Watched,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    poll_until_stopped(watched, every, stop, |poll| match poll {
        Poll::Unchanged => {}
        Poll::Unreadable(error) => {
            state.metrics().config_reload(false);
            tracing::error!(%error, "config file unreadable; keeping the last good config");
        }
        Poll::Changed(contents) => match load_engine(&contents[0]) {
            Ok(engine) => {
                let generation = state.admission().generation() + 1;
                state.set_admission(Admission::new(engine, generation));
                state.metrics().config_reload(true);
                tracing::info!(generation, "config reloaded");
            }
            Err(e) => {
                state.metrics().config_reload(false);
                // The config may hold credentials (inline basic_auth): values a parse error
                // quotes are withheld; the path and line say where the problem is.
                let error = withhold_values(&e.to_string());
                tracing::error!(
                    error = %printable(&error),
                    "new config rejected; keeping the last good config"
                );
            }
        },
    })
    .await;
}

/// Poll the certificate and key; a valid, matching pair is served to every new connection,
/// anything else is logged and counted and the old certificate stays.
pub async fn watch_certificate(
    state: AppState,
    resolver: Arc<CertResolver>,
    watched: Watched,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    poll_until_stopped(watched, every, stop, |poll| match poll {
        Poll::Unchanged => {}
        Poll::Unreadable(error) => {
            state.metrics().certificate_reload(false);
            tracing::error!(%error, "certificate unreadable; keeping the current one");
        }
        Poll::Changed(contents) => match ServingCert::from_pem(&contents[0], &contents[1]) {
            Ok(cert) => {
                resolver.store(&cert);
                state.metrics().certificate_reload(true);
                state.metrics().certificate_expiry.set(cert.not_after);
                tracing::info!(names = ?cert.names, not_after = cert.not_after, "certificate reloaded");
            }
            Err(e) => {
                state.metrics().certificate_reload(false);
                tracing::error!(
                    error = format!("{e:#}"),
                    "new certificate rejected; keeping the current one"
                );
            }
        },
    })
    .await;
}

/// Poll the client CA file; a valid one is used for every new handshake (connections already
/// open keep theirs), anything else is logged and counted and the current one stays.
pub async fn watch_client_ca(
    state: AppState,
    config: Arc<ArcSwap<ServerConfig>>,
    resolver: Arc<CertResolver>,
    watched: Watched,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    poll_until_stopped(watched, every, stop, |poll| match poll {
        Poll::Unchanged => {}
        Poll::Unreadable(error) => {
            state.metrics().client_ca_reload(false);
            tracing::error!(%error, "client CA file unreadable; keeping the current one");
        }
        Poll::Changed(contents) => match server_config(resolver.clone(), Some(&contents[0])) {
            Ok(new) => {
                config.store(Arc::new(new));
                state.metrics().client_ca_reload(true);
                tracing::info!("client CA reloaded");
            }
            Err(e) => {
                state.metrics().client_ca_reload(false);
                tracing::error!(
                    error = format!("{e:#}"),
                    "new client CA rejected; keeping the current one"
                );
            }
        },
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` loads its config and every reload through [`load_engine`]: a config whose
    /// output Prometheus would refuse is refused there (a reload keeps the last good one).
    #[test]
    fn a_config_prometheus_would_refuse_the_output_of_is_not_loaded() {
        assert!(load_engine(crate::config::EXAMPLE.as_bytes()).is_ok());
        for (text, want) in [
            (
                "federationAlerts:\n  enabled: true\n  downFor: 5 minutes\n",
                "federationAlerts.downFor (line 3)",
            ),
            (
                "localClusterName: tools\nclusters:\n- name: tools\n  targets: [a:9090]\n",
                "clusters[0].name (line 3)",
            ),
        ] {
            let err = load_engine(text.as_bytes()).expect_err(text).to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[tokio::test]
    async fn a_symlink_swap_is_a_change_and_a_rewrite_of_the_same_bytes_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::write(d.join("..v1/tls.crt"), "one").unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
        let mut watched = Watched::new(vec![d.join("tls.crt")], &[b"one".to_vec()]);
        assert_eq!(watched.poll().await, Poll::Unchanged);

        // What the kubelet does: a new timestamped dir, a new symlink renamed over `..data`.
        std::fs::create_dir(d.join("..v2")).unwrap();
        std::fs::write(d.join("..v2/tls.crt"), "two").unwrap();
        std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        assert_eq!(watched.poll().await, Poll::Changed(vec![b"two".to_vec()]));
        assert_eq!(watched.poll().await, Poll::Unchanged);

        std::fs::write(d.join("..v2/tls.crt"), "two").unwrap();
        assert_eq!(watched.poll().await, Poll::Unchanged);
    }

    #[tokio::test]
    async fn an_unreadable_file_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "a").unwrap();
        let mut watched = Watched::new(vec![path.clone()], &[b"a".to_vec()]);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(watched.poll().await, Poll::Unreadable(_)));
        assert_eq!(watched.poll().await, Poll::Unchanged);
        std::fs::write(&path, "b").unwrap();
        assert_eq!(watched.poll().await, Poll::Changed(vec![b"b".to_vec()]));
    }
}
