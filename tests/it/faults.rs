//! Faults under load, against the real `promfed serve` over TLS: certificate rotation through
//! the `..data` symlink swap, config reloads (a broken one keeps the last good config), SIGTERM
//! with two instances behind a retrying client, and a short soak (the long one is
//! `scripts/soak.sh`). Every test drives a steady, concurrent request stream and counts failed
//! requests, which must be zero.
//!
//! The harness (server process, verifying rustls client with keep-alive, steady load, mounted
//! files) is `tests/support/`: `serve`, `tls`, `load`.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promfed::server::dev::Pki;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::support::examples::{engine, example_config, rendered, tkg_configmap};
use crate::support::load::{Load, Mode, Workload, distinct_configmap, mixed_workload};
use crate::support::review::{applied, decoded_patch, review};
use crate::support::serve::{Files, NAME, Server};
use crate::support::tls::{Answer, Client, request_head};
use crate::support::{self, Mount, wait_until};

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn certificate_rotation_under_a_steady_stream_fails_no_request() {
    let certs: Vec<Pki> = (0..4).map(|_| Pki::generate(&[NAME]).unwrap()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("promfed.yaml");
    std::fs::write(&config, promfed::config::EXAMPLE).unwrap();
    let mut secret = Mount::new(
        &tmp.path().join("secret"),
        &[
            ("tls.crt", &certs[0].cert_pem),
            ("tls.key", &certs[0].key_pem),
        ],
    );
    let args: Vec<OsString> = vec![
        "--config".into(),
        config.into(),
        "--tls-cert-file".into(),
        secret.path("tls.crt").into(),
        "--tls-key-file".into(),
        secret.path("tls.key").into(),
    ];
    let server = Server::start(&args, &[]);
    let cas: Vec<&str> = certs.iter().map(|c| c.ca_pem.as_str()).collect();
    let client = Client::new(&cas);
    let workload = mixed_workload(16);

    // 2 threads on kept connections, 2 shaking hands for every request: 4 × 20 req/s.
    let kept = Load::start(
        &client,
        &[server.https],
        workload.clone(),
        2,
        20.0,
        Mode::KeepAlive,
        false,
    );
    let fresh = Load::start(
        &client,
        &[server.https],
        workload,
        2,
        20.0,
        Mode::NewConnection,
        false,
    );
    let probe =
        serde_json::to_vec(&review("probe", "DELETE", "ConfigMap", &tkg_configmap())).unwrap();
    let mut rotated_at = Vec::new();
    for (i, cert) in certs.iter().enumerate().skip(1) {
        std::thread::sleep(Duration::from_millis(700));
        secret.update(&[("tls.crt", &cert.cert_pem), ("tls.key", &cert.key_pem)]);
        let leaf = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
        let took = wait_until(&format!("certificate {i}"), support::HANG_GUARD, || {
            client.post(server.https, &probe).unwrap().leaf == leaf
        });
        rotated_at.push((Instant::now(), leaf, took));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (kept, fresh) = (kept.finish(), fresh.finish());
    let shown_after: Vec<Duration> = rotated_at.iter().map(|r| r.2).collect();
    eprintln!(
        "certificate rotation: each shown after {shown_after:?}; kept {}; fresh {}",
        kept.summary(),
        fresh.summary()
    );
    kept.assert_no_failures("kept connections");
    fresh.assert_no_failures("new connections");
    // Both streams ran through the rotations (a count, not a rate: how many depends on the
    // machine).
    assert!(
        kept.ok > 0 && fresh.ok > 0,
        "no requests: {} {}",
        kept.ok,
        fresh.ok
    );

    // A new connection made after a rotation was seen never gets an older certificate.
    let order: Vec<CertificateDer> = certs
        .iter()
        .map(|c| CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap())
        .collect();
    let rank = |leaf: &CertificateDer| order.iter().position(|l| l == leaf).unwrap();
    for (seen_at, leaf, _) in &rotated_at {
        for thread in &fresh.threads {
            for (sent, got) in &thread.leaves {
                if sent > seen_at {
                    assert!(
                        rank(got) >= rank(leaf),
                        "a new connection got an old certificate"
                    );
                }
            }
        }
    }
    let last = order.last().unwrap();
    for thread in &fresh.threads {
        assert_eq!(
            &thread.leaves.last().unwrap().1,
            last,
            "new connections end on the last certificate"
        );
    }
    assert_eq!(
        server.metric("promfed_certificate_reloads_total{result=\"success\"}"),
        3.0
    );
    assert_eq!(
        server.metric("promfed_certificate_reloads_total{result=\"failure\"}"),
        0.0
    );
}

#[test]
fn config_reload_under_load_keeps_the_last_good_and_applies_a_good_one() {
    let config_a = example_config("");
    let config_b = config_a.replace("localClusterName: shared-tools", "localClusterName: hub-b");
    let files = Files::new("");
    let mut mount = Mount::new(&files.path("config"), &[("promfed.yaml", &config_a)]);
    let args: Vec<OsString> = vec![
        "--config".into(),
        mount.path("promfed.yaml").into(),
        "--tls-cert-file".into(),
        files.path("tls.crt").into(),
        "--tls-key-file".into(),
        files.path("tls.key").into(),
    ];
    let server = Server::start(&args, &[]);
    let client = files.client();
    let object = tkg_configmap();
    let want_a = rendered(&engine(&config_a), &object);
    let want_b = rendered(&engine(&config_b), &object);
    let body = serde_json::to_vec(&review("cfg", "UPDATE", "ConfigMap", &object)).unwrap();
    let patched = |answer: &Answer| applied(&object, &decoded_patch(&answer.response()).unwrap());
    let (a, b) = (want_a.clone(), want_b.clone());
    let workload = Arc::new(Workload {
        body: Box::new(move |_, _| body.clone()),
        check: Box::new(move |answer| {
            let got = applied(
                &tkg_configmap(),
                &decoded_patch(&answer.response()).unwrap(),
            );
            if got == a || got == b {
                Ok(())
            } else {
                Err("the patch is neither config's".into())
            }
        }),
    });
    let load = Load::start(
        &client,
        &[server.https],
        workload,
        3,
        25.0,
        Mode::KeepAlive,
        false,
    );
    let probe = serde_json::to_vec(&review("probe", "UPDATE", "ConfigMap", &object)).unwrap();

    // Two broken configs: not YAML, and a federation target without a cluster label.
    let unlabelled = config_a.replace("labels:  { cluster: random }", "labels:  { team: random }");
    assert_ne!(unlabelled, config_a);
    for (n, broken) in ["localClusterName: [unclosed\n", unlabelled.as_str()]
        .iter()
        .enumerate()
    {
        std::thread::sleep(Duration::from_millis(300));
        mount.update(&[("promfed.yaml", broken)]);
        wait_until("the failed reload", support::HANG_GUARD, || {
            server.metric("promfed_config_reloads_total{result=\"failure\"}") == (n + 1) as f64
        });
        assert_eq!(server.metric("promfed_config_generation"), 1.0);
        assert_eq!(patched(&client.post(server.https, &probe).unwrap()), want_a);
    }
    // The log line is read by another thread than the one serving the metric: wait for it.
    wait_until("the refusal's log line", support::HANG_GUARD, || {
        server.log().contains("does not have a label")
    });

    std::thread::sleep(Duration::from_millis(300));
    mount.update(&[("promfed.yaml", &config_b)]);
    let took = wait_until("the good config", support::HANG_GUARD, || {
        patched(&client.post(server.https, &probe).unwrap()) == want_b
    });
    std::thread::sleep(Duration::from_millis(300));
    let totals = load.finish();
    eprintln!(
        "config reload: good config in effect after {took:?}; {}",
        totals.summary()
    );
    totals.assert_no_failures("config reloads");
    assert_eq!(
        server.metric("promfed_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(server.metric("promfed_config_generation"), 2.0);
}

#[test]
fn sigterm_under_load_completes_in_flight_reviews_and_a_retrying_client_loses_none() {
    let files = Files::new(promfed::config::EXAMPLE);
    let mut first = Server::with(&files);
    let second = Server::with(&files);
    let client = files.client();
    let load = Load::start(
        &client,
        &[first.https, second.https],
        mixed_workload(4),
        2,
        25.0,
        Mode::KeepAlive,
        true,
    );
    let fresh = Load::start(
        &client,
        &[first.https, second.https],
        mixed_workload(4),
        2,
        15.0,
        Mode::NewConnection,
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));

    // In flight when the signal comes: engine runs (never-seen ConfigMaps) and requests whose
    // body is only half sent.
    let in_flight: Vec<_> = (0..6)
        .map(|k| {
            let client = client.clone();
            let addr = first.https;
            std::thread::spawn(move || {
                let object = distinct_configmap(900_000 + k);
                let body = serde_json::to_vec(&review(
                    &format!("inflight-{k}"),
                    "UPDATE",
                    "ConfigMap",
                    &object,
                ))
                .unwrap();
                let mut conn = client.connect(addr).unwrap();
                conn.send(&request_head(body.len(), true)).unwrap();
                if k % 2 == 0 {
                    conn.send(&body[..body.len() / 2]).unwrap();
                    std::thread::sleep(Duration::from_millis(400));
                    conn.send(&body[body.len() / 2..]).unwrap();
                } else {
                    conn.send(&body).unwrap();
                }
                let answer = conn.answer().unwrap();
                let patch = decoded_patch(&answer.response()).expect("patched");
                assert_eq!(
                    applied(&object, &patch),
                    rendered(&engine(promfed::config::EXAMPLE), &object)
                );
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    first.sigterm();
    for thread in in_flight {
        thread
            .join()
            .expect("an in-flight review completes after SIGTERM");
    }
    let status = first.wait_exit(support::HANG_GUARD);
    assert!(status.success(), "exit status {status}\n{}", first.log());
    std::thread::sleep(Duration::from_millis(1000));
    let (load, fresh) = (load.finish(), fresh.finish());
    eprintln!(
        "SIGTERM: kept {}; fresh {}",
        load.summary(),
        fresh.summary()
    );
    load.assert_no_failures("kept connections");
    fresh.assert_no_failures("new connections");
    assert!(
        second.metric("promfed_reviews_total{outcome=\"mutated\"}") > 10.0,
        "the second instance took over"
    );
    assert!(first.log().contains("\"stopped\""), "{}", first.log());
}

#[test]
fn soak_at_a_steady_rate_has_no_errors_and_flat_memory() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let client = files.client();

    // Fill the response cache (256 answers) first, so that what follows measures steady state.
    let warm = Load::start(
        &client,
        &[server.https],
        mixed_workload(1),
        2,
        1000.0,
        Mode::KeepAlive,
        false,
    );
    wait_until("the cache to fill", support::HANG_GUARD, || {
        server.metric("promfed_review_cache_total{result=\"miss\"}") >= 300.0
    });
    warm.finish().assert_no_failures("warm-up");

    let seconds = 20;
    let load = Load::start(
        &client,
        &[server.https],
        mixed_workload(10),
        4,
        25.0,
        Mode::KeepAlive,
        false,
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(2));
        samples.push((started.elapsed().as_secs(), server.memory()));
    }
    let totals = load.finish();
    let table: Vec<String> = samples
        .iter()
        .map(|(s, m)| {
            format!(
                "{s:>3} s  RSS {:6.1} MiB  HWM {:6.1} MiB",
                m.rss_mib(),
                m.hwm_mib()
            )
        })
        .collect();
    eprintln!(
        "soak {seconds} s: {}\n{}",
        totals.summary(),
        table.join("\n")
    );
    totals.assert_no_failures("soak");
    // Only that answers kept coming (one a second is a hang guard, not a rate): how many the
    // server answers is scripts/soak.sh's to measure, against its reference.
    assert!(totals.ok >= seconds as usize, "{}", totals.summary());
    let first = samples[1].1.rss_mib();
    let last = samples.last().unwrap().1.rss_mib();
    assert!(
        last < first + 8.0,
        "RSS grew from {first:.1} to {last:.1} MiB"
    );
    let peak = samples.iter().map(|s| s.1.hwm_mib()).fold(0.0, f64::max);
    assert!(
        peak < 128.0,
        "peak RSS {peak:.1} MiB is over the Deployment's 128 MiB limit"
    );
}
