//! Issue 6: real federation end to end, three Prometheus servers configured only by promfed.
//!
//! All on loopback, started and stopped by the test: two workload clusters' Prometheus servers
//! (workload-a behind mTLS with certificates from `certs/generate.sh federation`, and hostile:
//! `external_labels: {cluster: local}`; workload-b behind basic auth) and the tools cluster's,
//! whose `prometheus-server` ConfigMap goes through `promfed serve` as an AdmissionReview over
//! TLS. The patched ConfigMap's files are all the tools Prometheus gets (only `rule_files` is
//! pointed at the temporary directory). Then the test asks it: every series carries its own
//! cluster, recording rules read local series only, the workloads' rule outputs arrive with their
//! cluster, the dashboards in `dashboards/` answer for every cluster, and a stopped workload
//! raises `FederationTargetDown`. `promfed render` must give the same ConfigMap as the webhook.
//!
//! Every cluster has a tiny exporter: a thread serving fixed text expositions whose numbers are
//! scaled per cluster, so rule outputs differ per cluster and are computed by hand here. The
//! fixtures are in `tests/data/federation/` (its SOURCES.md says what each file is).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use promfed::promql::{for_each_node, selectors};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};

use crate::support;
use crate::support::prometheus::{self, Api, Sample};
use crate::support::tls::Client;

#[path = "federation/dashboards.rs"]
mod dashboards;
#[path = "federation/setup.rs"]
mod setup;
#[path = "federation/sites.rs"]
mod sites;

use dashboards::check_dashboards;
use setup::{SetUp, openssl_runs, read};
use sites::{
    DEMO_RECORDS, FEDERATION_JOBS, LOCAL, NODE_CPU, SITES, WORKLOAD_A, WORKLOAD_B, expected,
};

// ---------------------------------------------------------------------------------------
// PromQL: selectors and filters, with promfed's walker (its order and coverage are tested in
// the promql module)

/// Whether an expression may be empty by design: it filters with a comparison (without
/// `bool`), `and` or `unless`.
fn filters(expr: &Expr) -> bool {
    let mut found = false;
    for_each_node(expr, &mut |e| {
        if let Expr::Binary(b) = e {
            let comparison = b.op.is_comparison_operator()
                && !b.modifier.as_ref().is_some_and(|m| m.return_bool);
            let set_filter = b.op.is_set_operator() && b.op.to_string() != "or";
            found |= comparison || set_filter;
        }
    });
    found
}

/// A selector as a `match[]` for the series API: `{__name__="x",a="b",...}` (no offset, no @).
fn match_selector(vs: &VectorSelector) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &vs.name
        && !vs.matchers.matchers.iter().any(|m| m.name == "__name__")
    {
        parts.push(format!("__name__=\"{name}\""));
    }
    parts.extend(vs.matchers.matchers.iter().map(ToString::to_string));
    format!("{{{}}}", parts.join(","))
}

fn parse_promql(expr: &str) -> Result<Expr, String> {
    promfed::promql::parse(expr).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// The checks

/// Every series carries the cluster label, with one of the three names.
fn check_cluster_labels(api: &Api) -> Vec<Sample> {
    let per_cluster = api.query(r#"count by (cluster) ({__name__=~".+"})"#);
    let clusters: BTreeSet<&str> = per_cluster.iter().map(|s| s.label("cluster")).collect();
    assert_eq!(
        clusters,
        SITES.iter().map(|s| s.name).collect::<BTreeSet<_>>(),
        "{per_cluster:?}"
    );
    let unlabelled = api.query(r#"count({__name__=~".+", cluster=""})"#);
    assert!(
        unlabelled.is_empty(),
        "series without a cluster label: {unlabelled:?}"
    );
    per_cluster
}

/// workload-a's /federate claims every series is `local`; on the tools side they carry
/// workload-a, and nothing labelled `local` comes from anywhere but the tools cluster's targets.
/// Both workloads refuse clients without their credentials.
fn check_hostile_workload(set_up: &SetUp) {
    let certs = &set_up.certs;
    let ca = read(&certs.join("ca.crt"));
    let identity = (
        read(&certs.join("tools/tls.crt")),
        read(&certs.join("tools/tls.key")),
    );
    let federate_up = format!(
        "GET /federate?match[]={} HTTP/1.0\r\nHost: prom-federation\r\n\r\n",
        prometheus::url_encode("up")
    );
    let a_addr = set_up.workload_a_addr;
    let federate = |client: Client| -> std::io::Result<(u16, Vec<u8>)> {
        let mut conn = client.connect(a_addr)?;
        conn.send(federate_up.as_bytes())?;
        conn.answer().map(|answer| (answer.status, answer.body))
    };
    let tls = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mtls = Client::build(
        &[&ca],
        "prom-federation",
        &tls,
        Some((&identity.0, &identity.1)),
    );
    let (status, body) =
        federate(mtls).expect("workload-a's /federate with the client certificate");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cluster=\"local\""), "{body}");
    let anonymous = Client::build(&[&ca], "prom-federation", &tls, None);
    if let Ok((status, body)) = federate(anonymous) {
        panic!(
            "workload-a answered without a client certificate: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _) =
        prometheus::http_get(set_up.workload_b_api.addr, "/federate?match[]=up", None)
            .expect("workload-b");
    assert_eq!(status, 401, "workload-b answered without basic auth");

    let api = &set_up.api;
    let a_exporter = set_up.exporter(WORKLOAD_A).to_string();
    let a_series = api.query(&format!(
        r#"node_cpu_seconds_total{{instance="{a_exporter}"}}"#
    ));
    assert_eq!(a_series.len(), NODE_CPU.len(), "{a_series:?}");
    assert!(
        a_series.iter().all(|s| s.label("cluster") == "workload-a"),
        "{a_series:?}"
    );
    for addr in [a_addr.to_string(), a_exporter] {
        let clusters = api.query(&format!(r#"count by (cluster) ({{instance="{addr}"}})"#));
        let names: Vec<&str> = clusters.iter().map(|s| s.label("cluster")).collect();
        assert_eq!(names, ["workload-a"], "series of {addr}");
    }
    let local_instances: BTreeSet<String> = [
        set_up.api.addr.to_string(),
        set_up.exporter(LOCAL).to_string(),
        set_up.promfed_metrics.to_string(),
    ]
    .into();
    for sample in api.query(r#"count by (instance, job) ({cluster="local"})"#) {
        let instance = sample.label("instance");
        assert!(
            instance.is_empty() || local_instances.contains(instance),
            "a series labelled cluster=\"local\" comes from {instance} (job {}), not from the \
             tools cluster's own targets {local_instances:?}",
            sample.label("job")
        );
    }
}

/// The rules as the tools Prometheus loaded them: every recording rule (the user's and ours)
/// labelled cluster="local", every selector of its query matching cluster="local"; the
/// federation health group is there.
fn check_loaded_rules(api: &Api) {
    let groups = api.data("/api/v1/rules?type=record")["groups"].clone();
    let mut recording = 0;
    for group in groups.as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            recording += 1;
            let name = rule["name"].as_str().unwrap_or_default();
            assert_eq!(rule["labels"]["cluster"], "local", "{rule}");
            assert_ne!(rule["health"], "err", "{rule}");
            let query = rule["query"].as_str().expect("query");
            let parsed = parse_promql(query).unwrap_or_else(|e| panic!("{name}: {e}"));
            for vs in selectors(&parsed) {
                let scoped = vs.matchers.matchers.iter().any(|m| {
                    m.name == "cluster" && m.value == "local" && matches!(m.op, MatchOp::Equal)
                });
                assert!(scoped, "rule {name}: selector {vs} is not scoped: {query}");
            }
        }
    }
    let records_in = |file: &str| {
        support::read_data(file)
            .lines()
            .filter(|l| {
                l.trim_start()
                    .trim_start_matches("- ")
                    .starts_with("record:")
            })
            .count()
    };
    assert_eq!(
        recording,
        records_in("tkg/recording_rules.yml") + records_in("federation/demo_rules.yml"),
        "recording rules on the tools Prometheus"
    );
    let alerting = api.data("/api/v1/rules?type=alert")["groups"].clone();
    let health = alerting
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == "promfed-federation-health")
        .unwrap_or_else(|| panic!("no federation health group among {alerting}"));
    let alerts: Vec<&str> = health["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(alerts.contains(&"FederationTargetDown"), "{health}");
}

/// Rule outputs: the tools cluster's own read its own exporter only (computed by hand), the
/// workloads' arrive federated with their names, and the original expression over everything
/// the tools Prometheus has would give something else.
fn check_rule_values(set_up: &SetUp) {
    let (api, workload_b) = (&set_up.api, &set_up.workload_b_api);
    // The original expressions, as workload-b (which runs them unchanged) read them.
    let originals: BTreeMap<String, String> =
        workload_b.data("/api/v1/rules?type=record")["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"] == "promfed-e2e.rules")
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                let text = |f: &str| r[f].as_str().expect("rule field").to_string();
                (text("name"), text("query"))
            })
            .collect();
    assert_eq!(
        originals
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        DEMO_RECORDS.into_iter().collect(),
        "workload-b's demo rules"
    );
    let values = |api: &Api, expr: &str| -> BTreeMap<String, f64> {
        api.query(expr).iter().map(|s| (s.key(), s.value)).collect()
    };
    let close = |got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>| {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((gk, gv), (wk, wv))| gk == wk && (gv - wv).abs() <= 1e-9 * wv.abs().max(1.0))
    };
    for record in DEMO_RECORDS {
        for site in SITES {
            let got = values(api, &format!(r#"{record}{{cluster="{}"}}"#, site.name));
            let want = expected(record, site);
            assert!(
                close(&got, &want),
                "{record} in cluster {} on the tools Prometheus: got {got:?}, want {want:?}",
                site.name
            );
        }
        let original = &originals[record];
        let isolated = values(workload_b, original);
        assert!(
            close(&isolated, &expected(record, WORKLOAD_B)),
            "{record} computed by workload-b itself: {isolated:?}"
        );
        let unscoped = values(api, original);
        assert!(
            !close(&unscoped, &expected(record, LOCAL)),
            "{record}: the unscoped expression gives the local value too ({unscoped:?}), so \
             this check proves nothing"
        );
    }
}

/// The series per cluster and `up` by cluster and job, as a table for the README.
fn series_table(per_cluster: &[Sample], api: &Api) -> String {
    let mut out = String::from(
        "Federated series on the tools Prometheus, as tests/it/federation.rs sees them:\n\n\
         count by (cluster) ({__name__=~\".+\"})\n",
    );
    out.push_str(&format!("  {:<12} {:>7}\n", "cluster", "series"));
    for s in per_cluster {
        out.push_str(&format!("  {:<12} {:>7}\n", s.label("cluster"), s.value));
    }
    out.push_str(&format!(
        "\nup by cluster and job\n  {:<12} {:<27} {:>2}  {}\n",
        "cluster", "job", "up", "scraped by"
    ));
    let mut up = api.query("up");
    up.sort_by_key(|s| (s.label("cluster").to_string(), s.label("job").to_string()));
    for s in &up {
        let (cluster, job) = (s.label("cluster"), s.label("job"));
        let by = if cluster == "local" {
            "tools Prometheus".to_string()
        } else if FEDERATION_JOBS.iter().any(|(j, _)| *j == job) {
            let how = if cluster == "workload-a" {
                "raw job, mTLS"
            } else {
                "clusters entry, basic auth"
            };
            format!("tools Prometheus, /federate ({how})")
        } else {
            format!("{cluster}'s Prometheus, federated")
        };
        out.push_str(&format!("  {cluster:<12} {job:<27} {:>2}  {by}\n", s.value));
    }
    out
}

/// A workload goes away: its federation target is down and `FederationTargetDown` goes off
/// for it, and only for it.
fn check_target_down_alert(set_up: &mut SetUp) {
    set_up.workload_b.stop();
    let api = &set_up.api;
    let alert = support::wait_for(
        "FederationTargetDown for workload-b",
        Duration::from_secs(60),
        || {
            let up = api.query(r#"up{job="federate-workload-b"}"#);
            if up.len() != 1 || up[0].value != 0.0 || up[0].label("cluster") != "workload-b" {
                return Err(format!("up: {up:?}"));
            }
            let alerts = api.data("/api/v1/alerts")["alerts"].clone();
            alerts
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["labels"]["alertname"] == "FederationTargetDown")
                .cloned()
                .ok_or_else(|| format!("alerts: {alerts}"))
        },
    );
    assert_eq!(alert["labels"]["cluster"], "workload-b", "{alert}");
    assert_eq!(alert["labels"]["job"], "federate-workload-b", "{alert}");
    assert!(
        alert["state"] == "pending" || alert["state"] == "firing",
        "{alert}"
    );
    let alerts = api.data("/api/v1/alerts")["alerts"].clone();
    let down = alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "FederationTargetDown")
        .count();
    assert_eq!(down, 1, "only workload-b is down: {alerts}");
    let a_up = api.query(r#"up{job="federation"}"#);
    assert!(
        a_up.len() == 1 && a_up[0].value == 1.0,
        "workload-a is still up: {a_up:?}"
    );
}

#[test]
fn three_prometheus_servers_configured_only_by_promfed_federate() {
    let release = support::require!(prometheus2_release);
    federate(&release);
}

#[test]
fn three_prometheus_servers_configured_only_by_promfed_federate_on_prometheus_3() {
    let release = support::require!(prometheus3_release);
    federate(&release);
}

/// The whole set-up with every server of one Prometheus release.
fn federate(release: &support::PrometheusRelease) {
    let prometheus = release.server.clone();
    let python = support::require!(python);
    if !openssl_runs() {
        support::skip::<()>(&support::current_test(), "openssl");
        return;
    }
    let started = Instant::now();
    let mut set_up = SetUp::start(&prometheus, &python);
    set_up.wait_for_everything();
    let ready_after = started.elapsed();

    let per_cluster = check_cluster_labels(&set_up.api);
    check_hostile_workload(&set_up);
    check_loaded_rules(&set_up.api);
    check_rule_values(&set_up);

    let mut report = series_table(&per_cluster, &set_up.api);
    let dashboards = support::root().join("dashboards");
    let dashboard_report = if dashboards.is_dir() {
        let dashboard_report = check_dashboards(&set_up.api, &dashboards);
        report.push('\n');
        report.push_str(&dashboard_report.table());
        Some(dashboard_report)
    } else {
        report.push_str("\nSKIPPED the dashboard checks: dashboards/ does not exist\n");
        None
    };
    // Printed past libtest's capture, for the README; before the assertions that may fail.
    let _ = writeln!(std::io::stderr(), "{report}");
    if let Some(dashboard_report) = dashboard_report {
        assert!(
            dashboard_report.failures.is_empty(),
            "dashboard queries that failed, or returned nothing although the set-up has every \
             series they select:\n{}",
            dashboard_report.failures.join("\n")
        );
        for (name, query, options) in &dashboard_report.cluster_options {
            let known: BTreeSet<&str> = SITES.iter().map(|s| s.name).collect();
            assert!(
                !options.is_empty() && options.iter().all(|o| known.contains(o.as_str())),
                "{name}: {query} offers {options:?}"
            );
            if query == "label_values(up, cluster)" {
                assert_eq!(options.len(), SITES.len(), "{name}: {query}");
            }
        }
    }

    check_target_down_alert(&mut set_up);
    let _ = writeln!(
        std::io::stderr(),
        "federation end to end on {}: every target up after {:.1}s, done after {:.1}s",
        release.name,
        ready_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
