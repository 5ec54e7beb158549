//! The federation test's set-up: certificates made by `certs/generate.sh`, the workloads'
//! Prometheus servers, `promfed serve`, the tools cluster's ConfigMap through the webhook (and
//! `promfed render`, which must agree), and the tools Prometheus on the result.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::sites::{
    DEMO_RECORDS, Exporter, FEDERATION_JOBS, LOCAL, LOCAL_JOBS, SITES, Site, WORKLOAD_A,
    WORKLOAD_B, WORKLOAD_JOBS,
};
use crate::support;
use crate::support::process::Process;
use crate::support::prometheus::{Api, Prometheus};
use crate::support::review::{applied, decoded_patch, review};
use crate::support::tls::Client;

// ---------------------------------------------------------------------------------------
// Fixtures and files

/// A fixture with its `${NAME}` placeholders filled in; an unknown placeholder is an error.
pub(super) fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !out.contains("${"),
        "a placeholder is left in the fixture:\n{out}"
    );
    out
}

pub(super) fn write(path: &Path, contents: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating a directory");
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

pub(super) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub(super) fn display(path: &Path) -> String {
    path.display().to_string()
}

pub(super) fn run_ok(program: &Path, args: &[&OsStr]) -> Vec<u8> {
    let out = support::run(program, args, None);
    assert!(
        out.status.success(),
        "{} {args:?}\n{}",
        program.display(),
        support::describe(&out)
    );
    out.stdout
}

/// Every document of a YAML stream, read by PyYAML (a reader that is not promfed's).
pub(super) fn yaml_documents(python: &Path, text: &str) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let out = support::run(python, &["-c".as_ref(), SCRIPT.as_ref()], Some(text));
    assert!(out.status.success(), "{}", support::describe(&out));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

/// The name the webhook's serving certificate (certs/generate.sh, defaults) is issued for.
pub(super) const WEBHOOK_NAME: &str = "promfed.promfed-system.svc";

// ---------------------------------------------------------------------------------------
// The set-up

/// Everything the test runs, stopped when dropped: the processes first (fields drop in
/// order), then the exporters, then the files.
pub(super) struct SetUp {
    pub(super) _tools: Prometheus,
    pub(super) _promfed: Process,
    pub(super) _workload_a: Prometheus,
    pub(super) workload_b: Prometheus,
    pub(super) exporters: Vec<Exporter>,
    /// The tools Prometheus's API, and workload-b's (with its password).
    pub(super) api: Api,
    pub(super) workload_b_api: Api,
    pub(super) workload_a_addr: SocketAddr,
    pub(super) promfed_metrics: SocketAddr,
    pub(super) certs: PathBuf,
    pub(super) _tmp: tempfile::TempDir,
}

impl SetUp {
    /// Start everything: the workloads, promfed serve, the tools ConfigMap through the webhook
    /// (and `promfed render`, which must agree), the tools Prometheus on the result.
    pub(super) fn start(prometheus: &Path, python: &Path) -> SetUp {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let generate = support::root().join("certs/generate.sh");

        // Exporters first: they keep their listeners. Then the three Prometheus ports.
        let exporters: Vec<Exporter> = SITES.iter().map(|s| Exporter::start(*s)).collect();
        let exporter = |site: Site| {
            let i = SITES.iter().position(|s| s.name == site.name).unwrap();
            exporters[i].addr
        };
        let [tools_addr, a_addr, b_addr] = support::free_ports::<3>();

        // Certificates as a user makes them: the federation CA, workload-a's server certificate
        // and web config, the tools side's client certificate; the webhook's serving one.
        let certs = root.join("certs");
        run_ok(
            &generate,
            &[
                "federation".as_ref(),
                certs.as_os_str(),
                "--cluster".as_ref(),
                "workload-a".as_ref(),
                "--address".as_ref(),
                a_addr.to_string().as_ref(),
            ],
        );
        let serving = root.join("serving");
        run_ok(&generate, &[serving.as_os_str()]);
        let secrets = root.join("secrets");
        let password = support::read_data("federation/basic-auth-password");
        write(&secrets.join("basic-auth-password"), password.trim());

        // The workloads: the user's recording rules plus ours, no cluster labels anywhere.
        let tkg_rules = support::read_data("tkg/recording_rules.yml");
        let demo_rules = support::read_data("federation/demo_rules.yml");
        let workload_files = |site: Site, addr: SocketAddr| -> PathBuf {
            let dir = root.join(site.name);
            write(&dir.join("recording_rules.yml"), &tkg_rules);
            write(&dir.join("demo_rules.yml"), &demo_rules);
            let template = support::read_data(format!("federation/{}-prometheus.yml", site.name));
            let config = fill(
                &template,
                &[
                    ("SELF", addr.to_string()),
                    ("EXPORTER", exporter(site).to_string()),
                    ("RULES", display(&dir)),
                    ("CERTS", display(&certs)),
                    ("SECRETS", display(&secrets)),
                ],
            );
            write(&dir.join("prometheus.yml"), &config);
            dir
        };
        let a_dir = workload_files(WORKLOAD_A, a_addr);
        // certs/generate.sh's web config names the files where the Secret is mounted.
        let a_certs = certs.join("workload/workload-a");
        let web_config = read(&a_certs.join("web.config.yml")).replace(
            "/etc/prometheus/federation/",
            &format!("{}/", a_certs.display()),
        );
        assert!(
            web_config
                .lines()
                .all(|l| l.trim_start().starts_with('#') || !l.contains("/etc/")),
            "{web_config}"
        );
        write(&a_dir.join("web.config.yml"), &web_config);
        let b_dir = workload_files(WORKLOAD_B, b_addr);
        write(
            &b_dir.join("web.config.yml"),
            &support::read_data("federation/workload-b-web-config.yml"),
        );
        let mut workload_a = Prometheus::start(
            prometheus,
            "workload-a prometheus",
            &a_dir,
            a_addr,
            Some(&a_dir.join("web.config.yml")),
        );
        let mut workload_b = Prometheus::start(
            prometheus,
            "workload-b prometheus",
            &b_dir,
            b_addr,
            Some(&b_dir.join("web.config.yml")),
        );

        // promfed serve, with the tools side's config.
        let promfed_config = root.join("promfed.yaml");
        let promfed_yaml = fill(
            &support::read_data("federation/promfed.yaml"),
            &[
                ("WORKLOAD_A", a_addr.to_string()),
                ("WORKLOAD_B", b_addr.to_string()),
                ("CERTS", display(&certs)),
                ("SECRETS", display(&secrets)),
            ],
        );
        write(&promfed_config, &promfed_yaml);
        let mut promfed = Process::spawn(
            "promfed serve",
            Command::new(support::promfed_bin())
                .arg("serve")
                .arg("--config")
                .arg(&promfed_config)
                .arg("--tls-cert-file")
                .arg(serving.join("tls.crt"))
                .arg("--tls-key-file")
                .arg(serving.join("tls.key"))
                .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
                .env("RUST_LOG", "info"),
        );
        let (webhook, promfed_metrics) = promfed.wait_for_line(support::HANG_GUARD, |line| {
            let log: Value = serde_json::from_str(line).ok()?;
            (log["message"] == "listening").then(|| {
                let addr = |f: &str| log[f].as_str()?.parse::<SocketAddr>().ok();
                Some((addr("https_addr")?, addr("metrics_addr")?))
            })?
        });

        // The tools cluster's ConfigMap, as the chart would install it.
        let tools_yml = fill(
            &support::read_data("federation/tools-prometheus.yml"),
            &[
                ("SELF", tools_addr.to_string()),
                ("EXPORTER", exporter(LOCAL).to_string()),
                ("PROMFED_METRICS", promfed_metrics.to_string()),
            ],
        );
        let configmap = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "prometheus-server",
                "namespace": "tanzu-system-monitoring",
                "labels": {"app": "prometheus", "component": "server"}
            },
            "data": {
                "prometheus.yml": tools_yml,
                "alerting_rules.yml": support::read_data("tkg/alerting_rules.yml"),
                "recording_rules.yml": tkg_rules,
                "demo_rules.yml": demo_rules,
            }
        });
        let ca = read(&serving.join("ca.crt"));
        let patched = through_the_webhook(&ca, webhook, &configmap);

        // promfed render makes the same ConfigMap of it (read back by PyYAML).
        let configmap_file = root.join("configmap.json");
        write(
            &configmap_file,
            &serde_json::to_string_pretty(&configmap).unwrap(),
        );
        let rendered = run_ok(
            &support::promfed_bin(),
            &[
                "render".as_ref(),
                "--config".as_ref(),
                promfed_config.as_os_str(),
                configmap_file.as_os_str(),
            ],
        );
        let rendered = yaml_documents(python, &String::from_utf8(rendered).expect("UTF-8"));
        assert_eq!(rendered.len(), 1, "promfed render wrote {rendered:?}");
        assert_eq!(
            rendered[0]["data"], patched["data"],
            "promfed render and the webhook disagree"
        );
        assert_eq!(rendered[0], patched);

        // The tools Prometheus runs on the patched ConfigMap's files; only rule_files move.
        let tools_dir = root.join("tools");
        let config_dir = tools_dir.join("config");
        for (key, value) in patched["data"].as_object().expect("data") {
            let text = value.as_str().expect("string data");
            write(&config_dir.join(key), text);
            if key == "prometheus.yml" {
                assert_eq!(text.matches("/etc/config/").count(), 3, "{text}");
                let text = text.replace("/etc/config/", &format!("{}/", config_dir.display()));
                write(&tools_dir.join("prometheus.yml"), &text);
            }
        }
        let mut tools =
            Prometheus::start(prometheus, "tools prometheus", &tools_dir, tools_addr, None);
        workload_a.wait_ready();
        workload_b.wait_ready();
        tools.wait_ready();

        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("federate:{}", password.trim()))
        );
        SetUp {
            _tools: tools,
            _promfed: promfed,
            _workload_a: workload_a,
            workload_b,
            exporters,
            api: Api {
                addr: tools_addr,
                authorization: None,
            },
            workload_b_api: Api {
                addr: b_addr,
                authorization: Some(basic),
            },
            workload_a_addr: a_addr,
            promfed_metrics,
            certs,
            _tmp: tmp,
        }
    }

    pub(super) fn exporter(&self, site: Site) -> SocketAddr {
        let i = SITES.iter().position(|s| s.name == site.name).unwrap();
        self.exporters[i].addr
    }

    /// Wait until every target of the tools Prometheus is up and every cluster's rule outputs
    /// are there.
    pub(super) fn wait_for_everything(&self) {
        // Every target: the tools' own, its federation jobs, and each workload's, federated.
        let targets = LOCAL_JOBS.len() + FEDERATION_JOBS.len() + 2 * WORKLOAD_JOBS.len();
        let records = DEMO_RECORDS.join("|");
        support::wait_for(
            "the tools Prometheus to have every target up three times and every cluster's rules",
            Duration::from_secs(90),
            || {
                let up = self.api.query("up");
                let down: Vec<String> = up
                    .iter()
                    .filter(|s| s.value != 1.0)
                    .map(|s| format!("{:?}", s.labels))
                    .collect();
                // rate() needs two samples: three of `up` mean three of every series of that
                // scrape (federation keeps the workloads' timestamps).
                let young: Vec<String> = self
                    .api
                    .query("count_over_time(up[1m]) < 3")
                    .iter()
                    .map(|s| format!("{}/{}", s.label("cluster"), s.label("job")))
                    .collect();
                let local = up.iter().filter(|s| s.label("cluster") == "local").count();
                let recorded: BTreeSet<(String, String)> = self
                    .api
                    .query(&format!(
                        r#"group by (cluster, __name__) ({{__name__=~"{records}"}})"#
                    ))
                    .iter()
                    .map(|s| (s.label("cluster").into(), s.label("__name__").into()))
                    .collect();
                if down.is_empty()
                    && young.is_empty()
                    && up.len() == targets
                    && local == LOCAL_JOBS.len()
                    && recorded.len() == SITES.len() * DEMO_RECORDS.len()
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {targets} targets ({local} local), down {down:?}, fewer than 3 \
                         samples {young:?}, rule outputs {recorded:?}",
                        up.len()
                    ))
                }
            },
        );
    }
}

/// POST an AdmissionReview of `configmap` to the webhook over TLS (verifying its certificate
/// against `ca`) and return the ConfigMap with the answer's patch applied.
pub(super) fn through_the_webhook(ca: &str, webhook: SocketAddr, configmap: &Value) -> Value {
    let review = review("federation-e2e", "CREATE", "ConfigMap", configmap);
    let answer = Client::named(&[ca], WEBHOOK_NAME)
        .post_json(webhook, &review)
        .unwrap_or_else(|e| panic!("POST /mutate: {e}"));
    let status = answer.status;
    let answer: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("{status} {e}: {}", answer.text()));
    assert_eq!(status, 200, "{answer}");
    let response = &answer["response"];
    assert_eq!(response["uid"], "federation-e2e", "{response}");
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    // A base64 string holding an RFC 6902 patch that applies to the request object.
    let patch = decoded_patch(response).expect("a patch");
    applied(configmap, &patch)
}

/// Whether `openssl` runs (certs/generate.sh needs it).
pub(super) fn openssl_runs() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}
