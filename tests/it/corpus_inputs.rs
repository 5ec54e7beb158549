//! The corpus inputs, checked with the real promtool before promfed touches them: a rewrite
//! test that fails on these files then points at promfed, not at the input. Also records what
//! Debian's promtool 2.42 cannot check (Kubernetes service discovery), which the other tests
//! work around with `support::stub_kubernetes_sd`.

use crate::support::{self, describe, read_data, require, run_promtool};

/// Rule files that repeat a rule on purpose upstream; they pass every check but the
/// duplicate-rule lint, so they are checked with `--lint=none` (tests/data/rules/SOURCES.md,
/// and tests/data/tkg/SOURCES.md for the last one).
const DUPLICATE_RULES: &[&str] = &[
    "rules/kube-prometheus-main/kubernetesControlPlane.rules.yaml",
    "rules/kube-prometheus-release-0.8/kubernetes.rules.yaml",
    "rules/mixins/kubernetes/rules.yaml",
    "rules/mixins/cortex/alerts.yaml",
    "tkg/recording_rules.yml",
];

/// Every rule file of the corpus, relative to tests/data: rules/**/*.y*ml and the TKG ones.
pub(crate) fn rule_files() -> Vec<String> {
    let base = support::data("");
    let paths = support::yaml_files(&support::data("rules"));
    let mut files: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(&base)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.push("tkg/recording_rules.yml".into());
    files.push("tkg/alerting_rules.yml".into());
    files.sort();
    files
}

fn check_rules(file: &str, lint: &str) -> std::process::Output {
    run_promtool(
        &["check", "rules", lint, "rules.yml"],
        &[("rules.yml", &read_data(file))],
    )
}

#[test]
fn every_rule_file_passes_promtool_check_rules() {
    let _promtool = require!(promtool);
    let files = rule_files();
    // 25 files under rules/ (SOURCES.md) and the two TKG ones: a lost file fails here.
    assert_eq!(files.len(), 27, "rule files found: {files:#?}");
    let mut failures = Vec::new();
    for file in &files {
        let lint = if DUPLICATE_RULES.contains(&file.as_str()) {
            "--lint=none"
        } else {
            // promtool 2.42 exits 0 on a lint error unless it is told to fail on it.
            "--lint-fatal"
        };
        let out = check_rules(file, lint);
        if !out.status.success() {
            failures.push(format!("{file} ({lint}):\n{}", describe(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn duplicate_rule_files_fail_only_the_duplicate_lint() {
    let _promtool = require!(promtool);
    for file in DUPLICATE_RULES {
        let out = check_rules(file, "--lint-fatal");
        let text = describe(&out);
        // Exit code 3 is promtool's "lint error" (1 would be a real error).
        assert_eq!(out.status.code(), Some(3), "{file}:\n{text}");
        assert!(text.contains("duplicate rule(s) found"), "{file}:\n{text}");
    }
}

#[test]
fn tkg_prometheus_yml_fails_only_on_kubernetes_sd_in_debian_promtool() {
    let _promtool = require!(promtool);
    let out = run_promtool(
        &["check", "config", "--syntax-only", "prometheus.yml"],
        &[("prometheus.yml", &read_data("tkg/prometheus.yml"))],
    );
    let text = describe(&out);
    assert!(!out.status.success(), "expected a failure:\n{text}");
    // Every unmarshal error is about the SD mechanism the Debian build leaves out: one per
    // kubernetes_sd_configs (3 scrape jobs and the alertmanager section).
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(errors.len(), 4, "{text}");
    for error in errors {
        assert!(
            error.contains("field kubernetes_sd_configs not found"),
            "unexpected error `{error}`:\n{text}"
        );
    }
}

#[test]
fn tkg_prometheus_yml_passes_with_kubernetes_sd_stubbed() {
    let _promtool = require!(promtool);
    let _python = require!(python);
    let out = support::promtool_check_config(&read_data("tkg/prometheus.yml"));
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn all_exprs_holds_840_distinct_expressions() {
    let text = read_data("rules/all_exprs.txt");
    let exprs: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(&text)
        .split("\n---\n")
        .collect();
    assert_eq!(exprs.len(), 840);
    let distinct: std::collections::HashSet<&str> = exprs.iter().copied().collect();
    assert_eq!(distinct.len(), 840);
}
