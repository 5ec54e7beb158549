//! Which ConfigMaps promfed rewrites, with no configuration: every real shape of a Prometheus
//! server's ConfigMap, and nothing else. The shapes are the TKG/TCE package's (in its two
//! namespaces) and the prometheus-community chart's before and since 25, for the release names
//! that exercise the chart's naming rule (`<release>-server` when the release name contains
//! "prometheus", else `<release>-prometheus-server`; templates/_helpers.tpl). The same table
//! is what the webhook's generated `matchConditions` must let through.

use std::collections::BTreeMap;

use promfed::Config;
use promfed::object::ObjectRef;

/// The name the chart gives the server ConfigMap of a release.
fn chart_name(release: &str) -> String {
    if release.contains("prometheus") {
        format!("{release}-server")
    } else {
        format!("{release}-prometheus-server")
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    (pairs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Labels of chart 14.x's server ConfigMap (corpus helm/prometheus-server-configmap-chart-14.12.0.yaml).
fn chart_14_labels(release: &str) -> BTreeMap<String, String> {
    labels(&[
        ("component", "server"),
        ("app", "prometheus"),
        ("release", release),
        ("chart", "prometheus-14.12.0"),
        ("heritage", "Helm"),
    ])
}

/// Labels of chart 25+'s (corpus helm/prometheus-server-configmap-chart-29.27.0.yaml).
fn chart_29_labels(release: &str) -> BTreeMap<String, String> {
    labels(&[
        ("app.kubernetes.io/component", "server"),
        ("app.kubernetes.io/name", "prometheus"),
        ("app.kubernetes.io/instance", release),
        ("app.kubernetes.io/version", "v3.14.0"),
        ("helm.sh/chart", "prometheus-29.27.0"),
        ("app.kubernetes.io/part-of", "prometheus"),
    ])
}

const SERVER_KEYS: &[&str] = &[
    "alerting_rules.yml",
    "alerts",
    "prometheus.yml",
    "recording_rules.yml",
    "rules",
];

fn object(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    keys: &[&str],
) -> ObjectRef {
    ObjectRef {
        kind: "ConfigMap".into(),
        name: name.into(),
        namespace: namespace.into(),
        labels,
        data_keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

/// `(case, object, selected)`: every real shape and its near misses.
pub(crate) fn shapes() -> Vec<(String, ObjectRef, bool)> {
    let tkg = labels(&[("app", "prometheus"), ("component", "server")]);
    let mut rows = Vec::new();
    for namespace in ["tanzu-system-monitoring", "prometheus"] {
        rows.push((
            format!("TKG/TCE package in {namespace}"),
            object("prometheus-server", namespace, tkg.clone(), SERVER_KEYS),
            true,
        ));
    }
    for release in ["prometheus", "monitoring", "my-prometheus"] {
        let name = chart_name(release);
        rows.push((
            format!("chart 14.x, release {release} ({name})"),
            object(&name, "default", chart_14_labels(release), SERVER_KEYS),
            true,
        ));
        rows.push((
            format!("chart 29.x, release {release} ({name})"),
            object(&name, "monitoring", chart_29_labels(release), SERVER_KEYS),
            true,
        ));
    }
    // Same labels, another role: no Prometheus config in it.
    rows.push((
        "TKG labels, but a dashboard ConfigMap".into(),
        object(
            "prometheus-dashboards",
            "prometheus",
            tkg.clone(),
            &["node.json"],
        ),
        false,
    ));
    rows.push((
        "chart 29.x labels, but no data".into(),
        object(
            "prometheus-extra",
            "default",
            chart_29_labels("prometheus"),
            &[],
        ),
        false,
    ));
    // A Prometheus config, but not a server's labels.
    rows.push((
        "alertmanager's ConfigMap (component alertmanager)".into(),
        object(
            "prometheus-alertmanager",
            "default",
            labels(&[("app", "prometheus"), ("component", "alertmanager")]),
            &["alertmanager.yml"],
        ),
        false,
    ));
    rows.push((
        "prometheus.yml without any labels".into(),
        object("prometheus-server", "default", BTreeMap::new(), SERVER_KEYS),
        false,
    ));
    rows.push((
        "half of each label set".into(),
        object(
            "prometheus-server",
            "default",
            labels(&[
                ("app", "prometheus"),
                ("app.kubernetes.io/component", "server"),
            ]),
            SERVER_KEYS,
        ),
        false,
    ));
    let mut secret = object("prometheus-server", "default", tkg, SERVER_KEYS);
    secret.kind = "Secret".into();
    rows.push((
        "a Secret shaped like the TKG ConfigMap".into(),
        secret,
        false,
    ));
    rows
}

#[test]
fn the_default_config_selects_every_real_shape_and_nothing_else() {
    let config = Config::from_yaml("localClusterName: tools\n").unwrap();
    let wrong: Vec<String> = (shapes().into_iter())
        .filter(|(_, object, want)| config.selects(object) != *want)
        .map(|(case, _, want)| format!("{case}: selected {}, want {want}", !want))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_deploy_config_selects_the_same_as_the_default() {
    let text =
        std::fs::read_to_string(crate::support::root().join("deploy/base/promfed.yaml")).unwrap();
    let deploy = Config::from_yaml(&text).unwrap();
    let default = Config::from_yaml("").unwrap();
    assert_eq!(deploy.configmap, default.configmap);
    assert_eq!(deploy.keys, default.keys);
    assert_eq!(deploy.match_conditions(), default.match_conditions());
}

/// Narrowing works as written: names, namespaces and one label set (the older one-mapping
/// form of `labels`), each of them reported by `misses`.
#[test]
fn a_narrowed_selector_names_what_an_object_misses() {
    let config = Config::from_yaml(
        "configmap:\n  names: [prometheus-server]\n  namespaces: [prometheus, monitoring]\n  labels: {app: prometheus}\n",
    )
    .unwrap();
    let selector = &config.configmap;
    let rows: Vec<(String, ObjectRef, bool)> = shapes();
    let misses = |case: &str| {
        let (_, object, _) = rows.iter().find(|r| r.0 == case).unwrap();
        selector.misses(object)
    };
    assert_eq!(misses("TKG/TCE package in prometheus"), None);
    let namespace = misses("TKG/TCE package in tanzu-system-monitoring").unwrap();
    assert!(namespace.contains("configmap.namespaces"), "{namespace}");
    let name = misses("chart 14.x, release monitoring (monitoring-prometheus-server)").unwrap();
    assert!(name.contains("configmap.names"), "{name}");
    let labels = misses("chart 29.x, release prometheus (prometheus-server)").unwrap();
    assert!(
        labels.contains("configmap.labels") && labels.contains("app=prometheus"),
        "{labels}"
    );
}

/// The conditions quote what they hold: a label value with a quote cannot end the CEL string.
#[test]
fn match_conditions_quote_label_values() {
    let config = Config::from_yaml("configmap:\n  labels: {team: \"o'brien\\\\x\"}\n").unwrap();
    let labels = (config.match_conditions().into_iter())
        .find(|c| c.name == "prometheus-server-labels")
        .unwrap();
    assert!(
        labels
            .expression
            .contains(r"object.metadata.labels['team'] == 'o\'brien\\x'"),
        "{}",
        labels.expression
    );
}
