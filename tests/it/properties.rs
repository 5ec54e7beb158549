//! Invariants over generated ConfigMaps: the rewrite is idempotent and loses nothing.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use promfed::yaml::{self, Limits, Node};
use promfed::{Config, Engine};

use crate::support::read_data;

fn corpus_exprs() -> &'static Vec<String> {
    static EXPRS: OnceLock<Vec<String>> = OnceLock::new();
    EXPRS.get_or_init(|| {
        read_data("rules/all_exprs.txt")
            .split("\n---\n")
            .map(str::to_string)
            .collect()
    })
}

/// Strings a YAML 1.1 reader would not read back as strings if written plain, and friends.
pub(crate) fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("on".to_string()),
        Just("off".to_string()),
        Just("yes".to_string()),
        Just("n".to_string()),
        Just("~".to_string()),
        Just("0777".to_string()),
        Just("1_000".to_string()),
        Just("12:30".to_string()),
        Just("1e3".to_string()),
        Just("2001-12-14".to_string()),
        Just("<<".to_string()),
        Just("".to_string()),
        Just(" leading space".to_string()),
        Just("a: b".to_string()),
        Just("# not a comment".to_string()),
        Just("{{ $labels.instance }} is down".to_string()),
        Just("multi\nline\n".to_string()),
        "[a-zA-Z0-9 _:./-]{0,20}",
        any::<String>().prop_map(|s| s.chars().filter(|c| !c.is_control()).collect()),
    ]
}

fn label_map() -> impl Strategy<Value = Json> {
    prop::collection::btree_map("[a-z][a-z0-9_]{0,8}", tricky_string(), 0..4)
        .prop_map(|m| Json::Object(m.into_iter().map(|(k, v)| (k, json!(v))).collect()))
}

fn rule() -> impl Strategy<Value = Json> {
    (
        any::<bool>(),
        "[a-z][a-z0-9_:]{0,15}",
        0..840usize,
        label_map(),
        label_map(),
    )
        .prop_map(|(record, name, expr, labels, annotations)| {
            let expr = corpus_exprs()[expr].clone();
            let mut rule = serde_json::Map::new();
            if record {
                rule.insert("record".into(), json!(name));
            } else {
                rule.insert("alert".into(), json!(name));
                rule.insert("annotations".into(), annotations);
            }
            rule.insert("expr".into(), json!(expr));
            if labels.as_object().is_some_and(|l| !l.is_empty()) {
                rule.insert("labels".into(), labels);
            }
            Json::Object(rule)
        })
}

pub(crate) fn rule_file() -> impl Strategy<Value = Json> {
    prop::collection::vec(
        ("[a-z][a-z.-]{0,12}", prop::collection::vec(rule(), 0..5)),
        0..4,
    )
    .prop_map(|groups| {
        json!({"groups": groups.into_iter().enumerate().map(|(i, (name, rules))| {
            json!({"name": format!("{name}-{i}"), "interval": "1m", "rules": rules})
        }).collect::<Vec<_>>()})
    })
}

fn relabel_rule() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(json!({"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"})),
        Just(
            json!({"source_labels": ["__address__"], "target_label": "cluster", "replacement": "tools"})
        ),
        Just(
            json!({"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"})
        ),
        tricky_string().prop_map(|s| json!({"target_label": "extra", "replacement": s})),
    ]
}

pub(crate) fn prometheus_yml() -> impl Strategy<Value = Json> {
    prop::collection::vec(
        (
            "[a-z][a-z-]{0,10}",
            prop::option::of(prop::collection::vec(relabel_rule(), 0..4)),
            tricky_string(),
        ),
        0..5,
    )
    .prop_map(|jobs| {
        let jobs: Vec<Json> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, (name, relabels, tricky))| {
                let mut job = json!({
                    "job_name": format!("{name}-{i}"),
                    "static_configs": [{"targets": ["localhost:9090"], "labels": {"note": tricky}}],
                });
                if let Some(relabels) = relabels {
                    job["relabel_configs"] = json!(relabels);
                }
                job
            })
            .collect();
        json!({"global": {"scrape_interval": "1m"}, "scrape_configs": jobs})
    })
}

pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let text = "localClusterName: tools\nclusters:\n- name: w1\n  targets: [w1:9090]\nrules:\n  alerting: local\nfederationAlerts:\n  enabled: true\n";
        Engine::new(Config::from_yaml(text).unwrap()).unwrap()
    })
}

fn parse_json(text: &str) -> Json {
    yaml::parse(text, Limits::default())
        .unwrap()
        .map_or(Json::Null, |n: Node| n.to_json())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Running promfed on its own output changes nothing.
    #[test]
    fn rewrite_is_idempotent(config in prometheus_yml(), rules in rule_file(), other in tricky_string()) {
        let data = vec![
            ("prometheus.yml".to_string(), yaml::emit(&Node::from_json(&config))),
            ("recording_rules.yml".to_string(), yaml::emit(&Node::from_json(&rules))),
            ("notes.txt".to_string(), other),
        ];
        let first = engine().rewrite(&data).unwrap();
        let second = engine().rewrite(&first.data).unwrap();
        prop_assert_eq!(&second.data, &first.data);
    }

    /// Every key, job, group, rule, label and annotation of the input is in the output.
    #[test]
    fn nothing_is_lost(config in prometheus_yml(), rules in rule_file(), other in tricky_string()) {
        let data = vec![
            ("prometheus.yml".to_string(), yaml::emit(&Node::from_json(&config))),
            ("recording_rules.yml".to_string(), yaml::emit(&Node::from_json(&rules))),
            ("notes.txt".to_string(), other.clone()),
        ];
        // The generated text itself must read back as the value it was made from.
        prop_assert_eq!(parse_json(&data[0].1), config.clone());
        prop_assert_eq!(parse_json(&data[1].1), rules.clone());
        let out = engine().rewrite(&data).unwrap();
        for (key, _) in &data {
            prop_assert!(out.data.iter().any(|(k, _)| k == key), "key {} lost", key);
        }
        prop_assert_eq!(&out.data[2].1, &other);

        let out_config = parse_json(&out.data[0].1);
        let out_jobs = out_config["scrape_configs"].as_array().unwrap();
        for job in config["scrape_configs"].as_array().unwrap() {
            let name = &job["job_name"];
            let found = out_jobs.iter().find(|j| &j["job_name"] == name);
            prop_assert!(found.is_some(), "job {} lost", name);
            let found = found.unwrap();
            prop_assert_eq!(&found["static_configs"], &job["static_configs"]);
            // The user's relabel rules are all still there (ours may move to the end).
            for r in job["relabel_configs"].as_array().into_iter().flatten() {
                prop_assert!(found["relabel_configs"].as_array().unwrap().contains(r));
            }
        }
        prop_assert_eq!(&out_config["global"], &config["global"]);

        let out_rules = parse_json(&out.data[1].1);
        let groups = rules["groups"].as_array().unwrap();
        for (g, og) in groups.iter().zip(out_rules["groups"].as_array().unwrap()) {
            prop_assert_eq!(&g["name"], &og["name"]);
            prop_assert_eq!(&g["interval"], &og["interval"]);
            let (rs, ors) = (g["rules"].as_array().unwrap(), og["rules"].as_array().unwrap());
            prop_assert_eq!(rs.len(), ors.len());
            for (r, or) in rs.iter().zip(ors) {
                prop_assert_eq!(&r["record"], &or["record"]);
                prop_assert_eq!(&r["alert"], &or["alert"]);
                prop_assert_eq!(&r["annotations"], &or["annotations"]);
                for (k, v) in r["labels"].as_object().into_iter().flatten() {
                    if k != "cluster" {
                        prop_assert_eq!(Some(v), or["labels"].get(k));
                    }
                }
                prop_assert_eq!(&or["labels"]["cluster"], &json!("tools"));
            }
        }
    }
}
