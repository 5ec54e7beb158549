//! The `promfed` command as a user runs it: exit codes, messages, streams.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::{data, promfed_bin, read_data};

fn promfed(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(promfed_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promfed runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // A usage error ends promfed before it reads: the write may meet a closed pipe.
        let _ = input.write_all(text.as_bytes());
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &str) -> String {
    data(p).display().to_string()
}

const OTHER_DOCS: &str = "# a comment before everything\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x   # odd spacing kept\nspec: {replicas: 1}\n";
const OTHER_CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: prometheus-server\n  namespace: other\n  labels: {app: grafana}\ndata:\n  prometheus.yml: 'scrape_configs: []'\n";

#[test]
fn render_rewrites_only_matched_configmaps_and_keeps_the_rest_byte_for_byte() {
    let tkg = read_data("tkg/prometheus-server-configmap.yaml");
    let stream = format!("{OTHER_DOCS}---\n{tkg}--- # trailing\n{OTHER_CONFIGMAP}");
    let config = path("example-config.yaml");
    let out = promfed(&["render", "--config", &config, "-"], Some(&stream));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("{OTHER_DOCS}---\n")), "{text}");
    assert!(text.ends_with(&format!("--- # trailing\n{OTHER_CONFIGMAP}")));
    assert!(text.contains("replacement: shared-tools"));
    // The header comments of the rewritten ConfigMap are kept.
    assert!(text.contains("---\n# Rendered equivalent of the prometheus-server ConfigMap"));

    // Rendering the output again is a no-op, and --diff says so with an empty diff and exit 0.
    let again = promfed(&["render", "--config", &config], Some(&text));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
    let diff = promfed(&["render", "--diff", "--config", &config], Some(&text));
    assert_eq!(diff.status.code(), Some(0), "{}", stderr(&diff));
    assert!(
        diff.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

/// `render --diff` exits like diff(1) and `git diff --exit-code`: 1 when there are changes.
#[test]
fn diff_shows_what_changes_and_exits_1() {
    let out = promfed(&["render", "--example", "--diff"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let diff = String::from_utf8(out.stdout).unwrap();
    assert!(
        diff.starts_with("--- a/prometheus-server-configmap.yaml\n+++ b/"),
        "{diff}"
    );
    assert!(
        diff.contains("+        replacement: shared-tools"),
        "{diff}"
    );
    assert!(diff.contains("+    - job_name: federation"), "{diff}");
}

#[test]
fn invalid_input_exits_1_naming_file_document_key_rule_and_line() {
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: prometheus-server\n  namespace: monitoring\n  labels: {app: prometheus, component: server}\ndata:\n  prometheus.yml: |\n    scrape_configs: []\n  recording_rules.yml: |\n    groups:\n    - name: node.rules\n      rules:\n      - record: instance:cpu:rate5m\n        expr: sum(rate(node_cpu_seconds_total[5m]) by (instance)\n";
    let stream = format!("{OTHER_DOCS}---\n{broken}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, stream).unwrap();
    let out = promfed(
        &[
            "render",
            "--config",
            &path("example-config.yaml"),
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    for want in [
        "manifests.yaml",
        "document 2",
        "monitoring/prometheus-server",
        "recording_rules.yml",
        "\"node.rules\"",
        "record \"instance:cpu:rate5m\"",
        "line 5",
        "cannot parse PromQL: 1:51: unclosed left parenthesis",
        "line 22 of the stream",
    ] {
        assert!(message.contains(want), "{message:?} lacks {want:?}");
    }
    assert!(out.stdout.is_empty(), "nothing is written on error");
}

#[test]
fn data_value_that_is_not_a_string_is_refused() {
    let doc = "kind: ConfigMap\nmetadata:\n  name: prometheus-server\n  labels: {app: prometheus, component: server}\ndata:\n  prometheus.yml:\n    scrape_configs: []\n";
    let out = promfed(
        &["render", "--config", &path("example-config.yaml")],
        Some(doc),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("data[\"prometheus.yml\"] must be a string"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let config = path("example-config.yaml");
    for args in [
        &["render"][..],
        &["render", "--config"],
        &["frobnicate"],
        &["check"],
        &["check", &config, "--config", &config],
        &["dashboard", "--label", "__x", "-"],
        &["dashboard", "--label", "bad-label", "-"],
        &["dashboard", "--variable", "a-b", "-"],
    ] {
        let out = promfed(args, Some("{}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = promfed(&["dashboard", "--label", "__x", "-"], Some("{}"));
    assert!(stderr(&out).contains("__x"), "{}", stderr(&out));
}

/// With --diff, exit 1 means "changes", so invalid input is trouble, 2, as for diff(1).
#[test]
fn diff_of_invalid_input_exits_2() {
    let broken = "kind: ConfigMap\nmetadata:\n  name: prometheus-server\n  labels: {app: prometheus, component: server}\ndata:\n  prometheus.yml: '{'\n";
    let config = path("example-config.yaml");
    let out = promfed(&["render", "--diff", "--config", &config], Some(broken));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("prometheus.yml"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let out = promfed(
        &["render", "--diff", "--config", "/nonexistent/promfed.yaml"],
        Some(""),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Without --diff the same input is the usual 1.
    let out = promfed(&["render", "--config", &config], Some(broken));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// `--example --config FILE`: the example ConfigMap rendered with that config.
#[test]
fn example_takes_the_given_config() {
    let out = promfed(
        &[
            "render",
            "--example",
            "--config",
            &path("config-compact.yaml"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("job_name: federate-workload-a"), "{text}");
    assert!(
        !text.contains("replacement: shared-tools"),
        "the seed's config was used"
    );
    let out = promfed(
        &[
            "render",
            "--example",
            "--config",
            "/nonexistent/promfed.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/promfed.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_validates_a_config() {
    let out = promfed(&["check", "--config", &path("example-config.yaml")], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The seed's job federates two clusters: it is rendered as two jobs, counted as two.
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok (local cluster \"shared-tools\", label \"cluster\", 2 federation jobs: federation-other, federation-random)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // promtool's habit: the file as the argument.
    let positional = promfed(&["check", &path("example-config.yaml")], None);
    assert_eq!(positional.status.code(), Some(0), "{}", stderr(&positional));
    assert_eq!(positional.stdout, out.stdout);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("promfed.yaml");
    std::fs::write(
        &bad,
        "additionalScrapeConfigs:\n- job_name: fed\n  static_configs:\n  - targets: [prom.other:9090]\n",
    )
    .unwrap();
    let out = promfed(&["check", "--config", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("promfed.yaml")
            && message.contains("\"fed\"")
            && message.contains("prom.other:9090"),
        "{message}"
    );
}

/// `check` prints the warnings `render` would print for the config.
#[test]
fn check_prints_the_config_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("promfed.yaml");
    std::fs::write(
        &file,
        "clusters:\n- name: w\n  targets: [w:9090]\n  basic_auth: {username: u, password: hunter2}\n",
    )
    .unwrap();
    let out = promfed(&["check", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("promfed: warning:")
            && message.contains("job \"federate-w\"")
            && message.contains("basic_auth.password is inline"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 federation job: federate-w)"), "{stdout}");
}

/// Issue 16, item 1: a config Prometheus would refuse the output of fails `check`.
#[test]
fn check_refuses_what_prometheus_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("promfed.yaml");
    std::fs::write(
        &file,
        "federationAlerts:\n  enabled: true\n  downFor: 5 minutes\n",
    )
    .unwrap();
    let out = promfed(&["check", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "promfed.yaml: federationAlerts.downFor (line 3): \"5 minutes\" is not a valid duration"
        ),
        "{}",
        stderr(&out)
    );
}

/// `serve --dev --config X` names X as the config to edit, not its own temporary copy.
#[test]
fn serve_dev_names_the_config_in_use() {
    use std::io::{BufRead as _, BufReader};
    let config = path("example-config.yaml");
    let child = Command::new(promfed_bin())
        .args([
            "serve",
            "--dev",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = crate::support::KillOnDrop(child);
    let stdout = server.0.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    while let Ok(line) = received.recv_timeout(crate::support::HANG_GUARD) {
        let done = line.starts_with("Metrics:");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("config "))
        .unwrap_or_else(|| panic!("no config line in the banner:\n{banner}"));
    assert_eq!(
        line.trim(),
        format!("config       {config}  (edit it: it is reloaded within a second)"),
        "{banner}"
    );
    drop(server);
}

#[test]
fn closed_stdout_is_a_normal_end() {
    let mut child = Command::new(promfed_bin())
        .args(["render", "--example"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn warnings_go_to_stderr() {
    let doc = "kind: ConfigMap\nmetadata:\n  name: prometheus-server\n  namespace: m\n  labels: {app: prometheus, component: server}\ndata:\n  prometheus.yml: |\n    scrape_configs: []\n  recording_rules.yml: |\n    groups:\n    - name: g\n      rules:\n      - record: r\n        expr: x{cluster=\"other\"}\n";
    let out = promfed(
        &["render", "--config", &path("example-config.yaml")],
        Some(doc),
    );
    assert!(out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("warning")
            && message.contains("ConfigMap m/prometheus-server")
            && message.contains("record \"r\""),
        "{message}"
    );
}

/// kustomize / kpt call a KRM function with a ResourceList on stdin.
#[test]
fn krm_function_rewrites_resource_list_items() {
    use promfed::yaml::{self, Limits, Node};
    let configmap = yaml::parse(
        &read_data("tkg/prometheus-server-configmap.yaml"),
        Limits::default(),
    )
    .unwrap()
    .unwrap()
    .to_json();
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "on"}, "spec": {"replicas": 1}});
    let list = serde_json::json!({
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": [deployment, configmap],
        "functionConfig": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "promfed"},
            "data": {"promfed.yaml": read_data("example-config.yaml")},
        },
    });
    let input = yaml::emit(&Node::from_json(&list));
    let out = promfed(&["render"], Some(&input));
    assert!(out.status.success(), "{}", stderr(&out));
    let got = yaml::parse(&String::from_utf8(out.stdout).unwrap(), Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    assert_eq!(got["kind"], "ResourceList");
    assert_eq!(got["items"][0], deployment);
    let prometheus = got["items"][1]["data"]["prometheus.yml"].as_str().unwrap();
    assert!(
        prometheus.contains("replacement: shared-tools"),
        "{prometheus}"
    );
    assert!(prometheus.contains("job_name: federation"), "{prometheus}");

    // Without any config it is a usage error.
    let mut bare = list.clone();
    bare.as_object_mut().unwrap().remove("functionConfig");
    let out = promfed(&["render"], Some(&yaml::emit(&Node::from_json(&bare))));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A ConfigMap with a Prometheus config that no selector matches is named on stderr with the
/// part of the selector it misses; the output is unchanged (`--diff`: exit 2, as nothing
/// was compared).
#[test]
fn render_warns_about_a_prometheus_configmap_it_does_not_match() {
    let chart = read_data("helm/prometheus-server-configmap-chart-29.27.0.yaml");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "labels",
            "configmap:\n  labels: {app: prometheus, component: server}\n",
            "its labels have none of the label sets of configmap.labels: {app=prometheus, component=server}",
        ),
        (
            "name",
            "configmap:\n  names: [prom]\n",
            "name \"prometheus-server\" is not in configmap.names [\"prom\"]",
        ),
        (
            "namespace",
            "configmap:\n  namespaces: [monitoring]\n",
            "namespace \"default\" is not in configmap.namespaces [\"monitoring\"]",
        ),
    ];
    for (part, config, why) in cases {
        let file = dir.path().join(format!("{part}.yaml"));
        std::fs::write(&file, config).unwrap();
        for diff in [false, true] {
            let mut args = vec!["render", "--config", file.to_str().unwrap()];
            if diff {
                args.push("--diff");
            }
            let out = promfed(&args, Some(&chart));
            // Nothing selected: a diff compared nothing, which is trouble (2), said so.
            let code = if diff { 2 } else { 0 };
            assert_eq!(out.status.code(), Some(code), "{part}: {}", stderr(&out));
            let message = stderr(&out);
            for want in [
                "promfed: warning: stdin: document 1: ConfigMap default/prometheus-server holds a Prometheus config (prometheus.yml)",
                why,
                "left unfederated",
                "nothing here is an object promfed rewrites",
            ] {
                assert!(message.contains(want), "{part}: {message:?} lacks {want:?}");
            }
            let expected: &[u8] = if diff { b"" } else { chart.as_bytes() };
            assert_eq!(out.stdout, expected, "{part}");
        }
    }
    // Matched ConfigMaps and ConfigMaps without a Prometheus config: no such warning.
    let quiet = format!(
        "{}---\n{OTHER_DOCS}---\nkind: ConfigMap\nmetadata: {{name: grafana}}\ndata: {{x: y}}\n",
        read_data("tkg/prometheus-server-configmap.yaml")
    );
    let out = promfed(
        &["render", "--config", &path("example-config.yaml")],
        Some(&quiet),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("left unfederated"),
        "{}",
        stderr(&out)
    );
}

/// The helm post-renderer passes the warning on and still writes the manifests (exit 0).
#[test]
fn helm_post_renderer_shows_the_unmatched_warning() {
    let chart = read_data("helm/prometheus-server-configmap-chart-29.27.0.yaml");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("promfed.yaml");
    std::fs::write(&config, "configmap:\n  labels: {app: prometheus}\n").unwrap();
    let out = Command::new("bash")
        .arg(crate::support::root().join("scripts/helm-post-renderer.sh"))
        .arg(&config)
        .env("PROMFED", promfed_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(chart.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, chart.as_bytes());
    assert!(
        stderr(&out).contains("left unfederated"),
        "{}",
        stderr(&out)
    );
}

/// As a KRM function, the unmatched Prometheus ConfigMap is a `results` warning (kpt and
/// kustomize show them) and a line on stderr.
#[test]
fn krm_function_reports_an_unmatched_prometheus_configmap() {
    use promfed::yaml::{self, Limits, Node};
    let configmap = yaml::parse(
        &read_data("helm/prometheus-server-configmap-chart-29.27.0.yaml"),
        Limits::default(),
    )
    .unwrap()
    .unwrap()
    .to_json();
    let list = serde_json::json!({
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": [configmap],
        "functionConfig": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "promfed"},
            "data": {"promfed.yaml": "configmap:\n  names: [prom]\n"},
        },
    });
    let out = promfed(&["render"], Some(&yaml::emit(&Node::from_json(&list))));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("item 1: ConfigMap default/prometheus-server"),
        "{}",
        stderr(&out)
    );
    let got = yaml::parse(&String::from_utf8(out.stdout).unwrap(), Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    let result = &got["results"][0];
    assert_eq!(result["severity"], "warning");
    assert_eq!(result["resourceRef"]["name"], "prometheus-server");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("name \"prometheus-server\" is not in configmap.names [\"prom\"]"),
        "{message}"
    );
    assert_eq!(got["items"][0], configmap);
}

// ---------------------------------------------------------------------------------------
// What a new user trips over (issue 24): each test failed before its fix.

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a diff adds the local cluster's relabel rule (at any indentation).
fn adds_replacement(diff: &str) -> bool {
    (diff.lines())
        .any(|l| l.starts_with('+') && l.trim_end().ends_with("replacement: shared-tools"))
}

/// A document as promfed's YAML reader sees it, as JSON.
fn to_json(yaml: &str) -> serde_json::Value {
    let node = promfed::yaml::parse(yaml, promfed::yaml::Limits::default())
        .unwrap()
        .unwrap();
    node.to_json()
}

/// `kubectl get cm -o yaml` of several objects prints a `kind: List`: `render --diff` and
/// `check --objects` both read its items as objects, and agree.
#[test]
fn render_and_check_read_a_list_alike() {
    let tkg = to_json(&read_data("tkg/prometheus-server-configmap.yaml"));
    let other = to_json(OTHER_DOCS);
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [other, tkg]});
    let text = promfed::yaml::emit(&promfed::yaml::Node::from_json(&list));
    let config = path("example-config.yaml");

    let diff = promfed(&["render", "--diff", "--config", &config], Some(&text));
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let shown = stdout(&diff);
    assert!(adds_replacement(&shown), "{shown}");
    let check = promfed(&["check", &config, "--objects", "-"], Some(&text));
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("ConfigMap tanzu-system-monitoring/prometheus-server: not as"),
        "{}",
        stdout(&check)
    );

    // Rendered, the List is as promfed writes it: both say so, and render --diff says what
    // it looked at.
    let rendered = promfed(&["render", "--config", &config], Some(&text));
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let rendered = stdout(&rendered);
    let again = promfed(&["render", "--diff", "--config", &config], Some(&rendered));
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    assert!(
        stderr(&again).contains("1 selected object, no change"),
        "{}",
        stderr(&again)
    );
    let check = promfed(&["check", &config, "--objects", "-"], Some(&rendered));
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
}

/// An input in which nothing is an object promfed rewrites is said so on stderr, naming
/// what it holds: `--diff` and `check --objects` exit 2 (nothing was compared), a plain
/// render passes the stream through (exit 0, as a helm post-renderer must).
#[test]
fn input_with_nothing_to_rewrite_is_said_so() {
    let config = path("example-config.yaml");
    let tkg = to_json(&read_data("tkg/prometheus-server-configmap.yaml"));
    let prometheus_yml = tkg["data"]["prometheus.yml"].as_str().unwrap().to_string();
    let rule_file = tkg["data"]["recording_rules.yml"]
        .as_str()
        .unwrap()
        .to_string();
    let rows: &[(&str, &str, &str)] = &[
        (
            "bare prometheus.yml",
            &prometheus_yml,
            "no `kind`: a Prometheus config (promfed rewrites the ConfigMap that holds it)",
        ),
        ("bare rule file", &rule_file, "no `kind`: a rule file"),
        ("a Deployment", OTHER_DOCS, "document 1: a Deployment"),
        (
            "an unselected ConfigMap",
            OTHER_CONFIGMAP,
            "ConfigMap other/prometheus-server: ConfigMap other/prometheus-server holds a \
             Prometheus config",
        ),
        ("empty", "", "it is empty"),
    ];
    for (name, input, want) in rows {
        let diff = promfed(&["render", "--diff", "--config", &config], Some(input));
        assert_eq!(diff.status.code(), Some(2), "{name}: {}", stderr(&diff));
        let message = stderr(&diff);
        assert!(
            message.contains("nothing here is an object promfed rewrites")
                && message.contains(want),
            "{name}: {message}"
        );
        assert!(diff.stdout.is_empty(), "{name}");

        let check = promfed(&["check", &config, "--objects", "-"], Some(input));
        assert_eq!(check.status.code(), Some(2), "{name}: {}", stderr(&check));
        assert!(stderr(&check).contains(want), "{name}: {}", stderr(&check));

        let render = promfed(&["render", "--config", &config], Some(input));
        assert_eq!(render.status.code(), Some(0), "{name}: {}", stderr(&render));
        assert_eq!(stdout(&render), *input, "{name}: passed through");
        assert!(
            stderr(&render).contains(want),
            "{name}: {}",
            stderr(&render)
        );
    }
    // A long stream (a chart's manifests) is summed up, not listed.
    let services: Vec<String> = (0..9)
        .map(|i| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\n"))
        .collect();
    let render = promfed(
        &["render", "--config", &config],
        Some(&services.join("---\n")),
    );
    let message = stderr(&render);
    assert!(
        message.contains("document 5: a Service; and 4 more") && !message.contains("document 6"),
        "{message}"
    );
}

/// A ConfigMap given as JSON (`kubectl get -o json`) is diffed as YAML, line by line, not
/// as one line replaced by the whole rendering.
#[test]
fn json_input_is_diffed_line_by_line() {
    let tkg = to_json(&read_data("tkg/prometheus-server-configmap.yaml"));
    let text = serde_json::to_string_pretty(&tkg).unwrap();
    let out = promfed(&["render", "--example", "--diff"], None);
    let yaml_diff = stdout(&out);
    let config = path("example-config.yaml");
    let out = promfed(&["render", "--diff", "--config", &config], Some(&text));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let diff = stdout(&out);
    let added = |d: &str| d.lines().filter(|l| l.starts_with('+')).count();
    let removed = |d: &str| d.lines().filter(|l| l.starts_with('-')).count();
    assert!(adds_replacement(&diff), "{diff}");
    // As many lines as the diff of the same ConfigMap given as YAML.
    assert!(
        added(&diff) == added(&yaml_diff) && removed(&diff) == removed(&yaml_diff),
        "JSON: +{} -{}, YAML: +{} -{}\n{diff}",
        added(&diff),
        removed(&diff),
        added(&yaml_diff),
        removed(&yaml_diff)
    );
}

/// One validation: what `render --scrape-configs` refuses, `check` refuses when the config
/// is written for prometheus-operator (`operator:` settings), and warns about naming that
/// path otherwise.
#[test]
fn check_refuses_what_render_scrape_configs_refuses() {
    let inline = "clusters:\n- name: a\n  targets: ['a:9090']\n  basic_auth:\n    username: federate\n    password_file: /etc/prometheus/secrets/fed/password\n";
    let operator = format!("{inline}operator:\n  scrapeConfigs:\n    labels: {{release: kps}}\n");
    let dir = crate::support::temp_files(&[("plain.yaml", inline), ("operator.yaml", &operator)]);
    let plain = dir.path().join("plain.yaml");
    let operator = dir.path().join("operator.yaml");

    let out = promfed(
        &[
            "render",
            "--scrape-configs",
            "--config",
            operator.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("basic_auth.username"),
        "{}",
        stderr(&out)
    );

    let out = promfed(&["check", operator.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let message = stderr(&out);
    assert!(
        message.contains("render --scrape-configs") && message.contains("basic_auth.username"),
        "{message}"
    );

    let out = promfed(&["check", plain.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("warning")
            && message.contains("render --scrape-configs")
            && message.contains("basic_auth.username"),
        "{message}"
    );
}

/// Federation jobs with mTLS files (a CA from a ConfigMap) and basic auth from Secrets.
const OPERATOR_CLUSTERS: &str = "clusters:\n\
    - name: a\n  url: https://a.example.com\n  tls_config:\n    ca_file: /etc/prometheus/configmaps/federation-ca/ca.crt\n    cert_file: /etc/prometheus/secrets/federation-tls/tls.crt\n    key_file: /etc/prometheus/secrets/federation-tls/tls.key\n\
    - name: b\n  targets: ['b:9090']\n  basic_auth:\n    username_file: /etc/prometheus/secrets/federation-b/user\n    password_file: /etc/prometheus/secrets/federation-b/password\n";

/// `render --scrape-configs` with the config `OPERATOR_CLUSTERS` + `more`: (exit code,
/// stdout, stderr).
fn scrape_configs(more: &str) -> (Option<i32>, String, String) {
    let config = format!("{OPERATOR_CLUSTERS}{more}");
    let dir = crate::support::temp_files(&[("promfed.yaml", &config)]);
    let path = dir.path().join("promfed.yaml");
    let out = promfed(
        &[
            "render",
            "--scrape-configs",
            "--config",
            path.to_str().unwrap(),
        ],
        None,
    );
    (out.status.code(), stdout(&out), stderr(&out))
}

const LABELLED: &str =
    "operator:\n  scrapeConfigs:\n    namespace: monitoring\n    labels: {release: kps}\n";

/// ScrapeConfigs without labels are picked up by no kube-prometheus-stack Prometheus
/// (`scrapeConfigSelector: {release: <release>}`): `render --scrape-configs` warns, naming the
/// setting to add, and so does `check` of a config written for the operator path.
#[test]
fn scrape_configs_without_labels_are_warned_about() {
    let (code, _, message) = scrape_configs("");
    assert_eq!(code, Some(0), "{message}");
    assert!(
        message.contains("warning") && message.contains("operator.scrapeConfigs.labels"),
        "{message}"
    );
    let (code, _, message) = scrape_configs(LABELLED);
    assert_eq!(code, Some(0), "{message}");
    assert!(!message.contains("warning"), "{message}");

    let config =
        format!("{OPERATOR_CLUSTERS}operator: {{scrapeConfigs: {{namespace: monitoring}}}}\n");
    let dir = crate::support::temp_files(&[("promfed.yaml", &config)]);
    let out = promfed(
        &["check", dir.path().join("promfed.yaml").to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("operator.scrapeConfigs.labels"),
        "{}",
        stderr(&out)
    );
}

/// The Secrets and ConfigMaps the ScrapeConfigs read open the stream as comments, each with
/// its keys, in the namespace they must be in: without them the operator scrapes nothing.
#[test]
fn scrape_configs_list_the_secrets_they_read() {
    let (code, text, message) = scrape_configs("");
    assert_eq!(code, Some(0), "{message}");
    assert!(
        text.starts_with(
            "# These ScrapeConfigs read the following from the namespace they are applied in"
        ),
        "{text}"
    );
    let (code, text, message) = scrape_configs(LABELLED);
    assert_eq!(code, Some(0), "{message}");
    let comments: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    assert!(comments[0].contains("from namespace monitoring"), "{text}");
    assert_eq!(
        comments[2..],
        [
            "#   ConfigMap federation-ca: ca.crt",
            "#   Secret federation-b: password, user",
            "#   Secret federation-tls: tls.crt, tls.key",
        ],
        "{text}"
    );
    // Each one is what the objects refer to.
    let documents: Vec<serde_json::Value> = text.split("---\n").map(to_json).collect();
    let a = &documents[0]["spec"];
    assert_eq!(
        a["tlsConfig"]["ca"]["configMap"]["name"], "federation-ca",
        "{a}"
    );
    assert_eq!(a["tlsConfig"]["keySecret"]["key"], "tls.key", "{a}");
    let b = &documents[1]["spec"];
    assert_eq!(b["basicAuth"]["username"]["name"], "federation-b", "{b}");
}

/// `federationAlerts.enabled` on the operator path: the alert group comes as a PrometheusRule
/// next to the ScrapeConfigs, with their namespace and labels; promtool loads its group, and
/// promfed (render, as the webhook) leaves it as written.
#[test]
fn federation_alerts_come_as_a_prometheus_rule() {
    let (code, text, message) = scrape_configs(LABELLED);
    assert_eq!(code, Some(0), "{message}");
    assert!(
        !text.contains("kind: PrometheusRule"),
        "alerts not enabled:\n{text}"
    );

    let alerts = format!("{LABELLED}federationAlerts: {{enabled: true}}\n");
    let (code, text, message) = scrape_configs(&alerts);
    assert_eq!(code, Some(0), "{message}");
    let documents: Vec<serde_json::Value> = text.split("---\n").map(to_json).collect();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ScrapeConfig", "ScrapeConfig", "PrometheusRule"]);
    let rule = &documents[2];
    assert_eq!(rule["metadata"]["name"], "promfed-federation-health");
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let group = &rule["spec"]["groups"][0];
    assert_eq!(group["name"], "promfed-federation-health");
    let names: Vec<&str> = (group["rules"].as_array().unwrap().iter())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"FederationTargetDown"), "{names:?}");
    assert!(
        group["rules"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("federate-a|federate-b"),
        "{group}"
    );

    // The webhook and render leave it as written (its group is promfed's own).
    let config = format!("{OPERATOR_CLUSTERS}{alerts}");
    let dir = crate::support::temp_files(&[("promfed.yaml", &config)]);
    let path = dir.path().join("promfed.yaml");
    let rule_text = text.rsplit("---\n").next().unwrap();
    let out = promfed(
        &["render", "--diff", "--config", path.to_str().unwrap()],
        Some(rule_text),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // Prometheus loads the group.
    if crate::support::promtool().is_none() {
        crate::support::skip::<()>(&crate::support::current_test(), "promtool");
        return;
    }
    let file = promfed::yaml::emit(&promfed::yaml::Node::from_json(&rule["spec"]));
    let out =
        crate::support::run_promtool(&["check", "rules", "alerts.yml"], &[("alerts.yml", &file)]);
    assert!(out.status.success(), "{}", crate::support::describe(&out));
}

/// The help says what `--config` needs and which kinds promfed rewrites.
#[test]
fn help_speaks_of_every_kind_and_when_config_is_needed() {
    let out = promfed(&["render", "--help"], None);
    let help = stdout(&out);
    for want in [
        "PrometheusRule",
        "Prometheus objects",
        "Required, except with --example",
        "kind: List",
    ] {
        assert!(help.contains(want), "render --help lacks {want:?}:\n{help}");
    }
    let out = promfed(&["--help"], None);
    assert!(stdout(&out).contains("PrometheusRule"), "{}", stdout(&out));
}
