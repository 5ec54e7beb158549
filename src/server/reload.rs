//! Reloading files that change under a running server.
//!
//! Polling, not inotify: Kubernetes updates a mounted Secret or ConfigMap by swapping the
//! `..data` symlink, so the watched files are never written and their own mtime never changes.
//! Every poll reads the files through their paths (following the symlinks) and compares the
//! *content* with what was seen last; only a difference triggers a load. A load that fails is
//! remembered too, so a broken file is reported once, not every second.
//!
//! A load that fails is reported only when the next poll finds the same contents ([`Doubt`]):
//! the files of a pair are read one after the other, each through the `..data` symlink, so a
//! swap between the two reads gives a new certificate with the old key, a pair that was never
//! on disk. The next poll reads the new pair and loads it; counting the torn read as a failed
//! reload would set off an alert for a rotation that went well.
//!
//! The config is taken only once its contents have stayed the same for a quiet period
//! ([`CONFIG_QUIET`], [`Watched::settling`]): a file rewritten in place (not the kubelet's
//! `..data` swap) can be read half written, and the first two thirds of a config are often
//! a valid config (federation jobs without their `tls_config`) that a load cannot tell from
//! the whole. Contents that change again before they settled were never loaded: counted in
//! `promfed_config_reloads_skipped_total`. A writer that pauses for longer than the quiet
//! period mid-file can still be read half way; the `..data` swap of a mounted ConfigMap
//! cannot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::tls::{CertResolver, ServingCert, server_config};
use super::{AppState, printable};
use crate::Engine;
use crate::admission::Admission;
use crate::redact::withhold_values;

/// How long the config file's new contents must stay the same before they are loaded.
pub const CONFIG_QUIET: Duration = Duration::from_secs(1);

/// Files that are loaded together (a certificate and its key): a change to any is one change.
#[derive(Debug)]
pub struct Watched {
    paths: Vec<PathBuf>,
    seen: [u8; 32],
    last_error: Option<String>,
    /// New contents are reported only after staying the same this long.
    quiet: Duration,
    /// New contents not reported yet: their digest and when they were first read.
    settling: Option<([u8; 32], Instant)>,
}

/// What a poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Unchanged,
    /// New contents, one per path, in order.
    Changed(Vec<Vec<u8>>),
    /// New contents that changed again before they had stayed the same for the quiet
    /// period: never loaded.
    Skipped,
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
            quiet: Duration::ZERO,
            settling: None,
        }
    }

    /// Report new contents only once two reads at least `quiet` apart found them the same
    /// (with none different in between).
    pub fn settling(self, quiet: Duration) -> Watched {
        Watched { quiet, ..self }
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
        let now = Instant::now();
        let settling = self.settling.take();
        if hash == self.seen {
            // Back to what is loaded: whatever was settling is never loaded.
            return match settling {
                Some(_) => Poll::Skipped,
                None => Poll::Unchanged,
            };
        }
        if !self.quiet.is_zero() {
            match settling {
                Some((pending, since)) if pending == hash => {
                    if now - since < self.quiet {
                        self.settling = Some((pending, since));
                        return Poll::Unchanged;
                    }
                }
                other => {
                    self.settling = Some((hash, now));
                    return match other {
                        Some(_) => Poll::Skipped,
                        None => Poll::Unchanged,
                    };
                }
            }
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

/// What a poll comes to once [`Doubt`] has judged it.
#[derive(Debug)]
pub enum Event<T> {
    /// The new contents loaded: use them.
    Loaded(T),
    /// A file could not be read (reported once per distinct error).
    Unreadable(String),
    /// New contents that did not load, found again by the next poll.
    Rejected(anyhow::Error),
    /// New contents that changed again before they settled ([`Poll::Skipped`]).
    Skipped,
}

/// Holds back the failure of new contents until the next poll: the same contents again make it
/// a failure ([`Event::Rejected`]); other contents replace it (a pair read halfway through a
/// rotation is looked at again, not reported).
#[derive(Debug, Default)]
pub struct Doubt {
    held: Option<anyhow::Error>,
}

impl Doubt {
    /// What `poll` comes to, loading new contents with `load`; `None`: nothing to act on.
    pub fn judge<T>(
        &mut self,
        poll: Poll,
        load: impl FnOnce(&[Vec<u8>]) -> anyhow::Result<T>,
    ) -> Option<Event<T>> {
        match poll {
            Poll::Unchanged => self.held.take().map(Event::Rejected),
            Poll::Skipped => Some(Event::Skipped),
            Poll::Unreadable(error) => {
                self.held = None;
                Some(Event::Unreadable(error))
            }
            Poll::Changed(contents) => match load(&contents) {
                Ok(loaded) => {
                    self.held = None;
                    Some(Event::Loaded(loaded))
                }
                Err(e) => {
                    tracing::debug!("new contents did not load; looking again at the next poll");
                    self.held = Some(e);
                    None
                }
            },
        }
    }
}

/// Poll `watched` every `every` until stopped, loading each change with `load` and handing
/// what [`Doubt`] makes of it to `on`.
async fn poll_until_stopped<T>(
    mut watched: Watched,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    load: impl Fn(&[Vec<u8>]) -> anyhow::Result<T>,
    mut on: impl FnMut(Event<T>),
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut doubt = Doubt::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = super::stopped(&mut stop) => return,
        }
        if let Some(event) = doubt.judge(watched.poll().await, &load) {
            on(event);
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
    let load = |contents: &[Vec<u8>]| load_engine(&contents[0]);
    poll_until_stopped(watched, every, stop, load, |event| match event {
        Event::Unreadable(error) => {
            state.metrics().config_reload(false);
            tracing::error!(%error, "config file unreadable; keeping the last good config");
        }
        Event::Loaded(engine) => {
            let generation = state.admission().generation() + 1;
            state.set_admission(Admission::new(engine, generation));
            state.metrics().config_reload(true);
            tracing::info!(generation, "config reloaded");
        }
        Event::Skipped => {
            state.metrics().config_reloads_skipped.inc();
            tracing::warn!(
                "config file changed again before it stayed the same for {:.1} s (written in \
                 place?); not loaded",
                CONFIG_QUIET.as_secs_f64()
            );
        }
        Event::Rejected(e) => {
            state.metrics().config_reload(false);
            // The config may hold credentials (inline basic_auth): values a parse error
            // quotes are withheld; the path and line say where the problem is.
            let error = withhold_values(&e.to_string());
            tracing::error!(
                error = %printable(&error),
                "new config rejected; keeping the last good config"
            );
        }
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
    let load = |contents: &[Vec<u8>]| ServingCert::from_pem(&contents[0], &contents[1]);
    poll_until_stopped(watched, every, stop, load, |event| match event {
        Event::Unreadable(error) => {
            state.metrics().certificate_reload(false);
            tracing::error!(%error, "certificate unreadable; keeping the current one");
        }
        Event::Loaded(cert) => {
            resolver.store(&cert);
            state.metrics().certificate_reload(true);
            state.metrics().certificate_expiry.set(cert.not_after);
            tracing::info!(names = ?cert.names, not_after = cert.not_after, "certificate reloaded");
        }
        // Certificates are read without a quiet period (a torn pair does not load: Doubt).
        Event::Skipped => {}
        Event::Rejected(e) => {
            state.metrics().certificate_reload(false);
            tracing::error!(
                error = format!("{e:#}"),
                "new certificate rejected; keeping the current one"
            );
        }
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
    let load = |contents: &[Vec<u8>]| server_config(resolver.clone(), Some(&contents[0]));
    poll_until_stopped(watched, every, stop, load, |event| match event {
        Event::Unreadable(error) => {
            state.metrics().client_ca_reload(false);
            tracing::error!(%error, "client CA file unreadable; keeping the current one");
        }
        Event::Loaded(new) => {
            config.store(Arc::new(new));
            state.metrics().client_ca_reload(true);
            tracing::info!("client CA reloaded");
        }
        Event::Skipped => {}
        Event::Rejected(e) => {
            state.metrics().client_ca_reload(false);
            tracing::error!(
                error = format!("{e:#}"),
                "new client CA rejected; keeping the current one"
            );
        }
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

    fn pair_loads(contents: &[Vec<u8>]) -> anyhow::Result<ServingCert> {
        ServingCert::from_pem(&contents[0], &contents[1])
    }

    /// A swap of `..data` between reading the certificate and reading the key gives the new
    /// certificate with the old key: the next poll reads the new pair, and nothing failed.
    #[test]
    fn a_pair_read_halfway_through_a_rotation_is_not_a_failure() {
        let old = crate::server::dev::Pki::generate(&["a"]).unwrap();
        let new = crate::server::dev::Pki::generate(&["a"]).unwrap();
        let pem = |s: &str| s.as_bytes().to_vec();
        let mut doubt = Doubt::default();
        let torn = Poll::Changed(vec![pem(&new.cert_pem), pem(&old.key_pem)]);
        assert!(doubt.judge(torn, pair_loads).is_none());
        let whole = Poll::Changed(vec![pem(&new.cert_pem), pem(&new.key_pem)]);
        assert!(matches!(
            doubt.judge(whole, pair_loads),
            Some(Event::Loaded(_))
        ));
        assert!(doubt.judge(Poll::Unchanged, pair_loads).is_none());
    }

    /// A broken pair still there at the next poll is a failure, reported once; a broken pair
    /// replaced by another broken one is reported when that one stays.
    #[tokio::test]
    async fn a_broken_pair_that_stays_is_rejected_once() {
        let one = crate::server::dev::Pki::generate(&["a"]).unwrap();
        let two = crate::server::dev::Pki::generate(&["a"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &one.cert_pem).unwrap();
        std::fs::write(&key, &one.key_pem).unwrap();
        let mut watched = Watched::new(
            vec![cert.clone(), key.clone()],
            &[one.cert_pem.clone().into(), one.key_pem.clone().into()],
        );
        let mut doubt = Doubt::default();
        std::fs::write(&cert, &two.cert_pem).unwrap();
        assert!(doubt.judge(watched.poll().await, pair_loads).is_none());
        std::fs::write(&cert, "not PEM").unwrap();
        assert!(doubt.judge(watched.poll().await, pair_loads).is_none());
        let rejected = doubt.judge(watched.poll().await, pair_loads);
        assert!(matches!(rejected, Some(Event::Rejected(_))), "{rejected:?}");
        assert!(doubt.judge(watched.poll().await, pair_loads).is_none());
        std::fs::write(&cert, &one.cert_pem).unwrap();
        assert!(matches!(
            doubt.judge(watched.poll().await, pair_loads),
            Some(Event::Loaded(_))
        ));
    }

    /// A file rewritten in place, read half way: the half is never reported, the whole is once
    /// it stayed the same for the quiet period, and contents replaced before they settled are
    /// counted as skipped.
    #[tokio::test]
    async fn contents_are_reported_only_once_they_stay_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "old").unwrap();
        let quiet = Duration::from_millis(200);
        let mut watched = Watched::new(vec![path.clone()], &[b"old".to_vec()]).settling(quiet);
        std::fs::write(&path, "ne").unwrap();
        assert_eq!(
            watched.poll().await,
            Poll::Unchanged,
            "first read of new contents"
        );
        std::fs::write(&path, "new").unwrap();
        assert_eq!(watched.poll().await, Poll::Skipped, "the half, replaced");
        assert_eq!(
            watched.poll().await,
            Poll::Unchanged,
            "not quiet long enough"
        );
        tokio::time::sleep(quiet).await;
        assert_eq!(watched.poll().await, Poll::Changed(vec![b"new".to_vec()]));
        assert_eq!(watched.poll().await, Poll::Unchanged);
        // Changed and changed back before settling: skipped, nothing loaded.
        std::fs::write(&path, "other").unwrap();
        assert_eq!(watched.poll().await, Poll::Unchanged);
        std::fs::write(&path, "new").unwrap();
        assert_eq!(watched.poll().await, Poll::Skipped);
        tokio::time::sleep(quiet).await;
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
