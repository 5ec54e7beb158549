//! The tables: the fields of each Prometheus config struct promfed checks, and what each
//! holds (the sources are listed in mod.rs).

use super::validate::{
    authorization_rules, basic_auth_rules, oauth2_rules, relabel_rules, rule_group_rules,
    rule_rules, scrape_config_rules, tls_rules,
};
use super::{Kind, Type};

/// `config.ScrapeConfig`'s own fields (config/config.go).
const SCRAPE_OWN: &[(&str, Kind)] = &[
    ("job_name", Kind::Str),
    ("honor_labels", Kind::Bool),
    ("honor_timestamps", Kind::Bool),
    ("track_timestamps_staleness", Kind::Bool),
    ("params", Kind::StrListMap),
    ("scrape_interval", Kind::Duration),
    ("scrape_timeout", Kind::Duration),
    ("scrape_protocols", Kind::StrList),
    ("fallback_scrape_protocol", Kind::Str),
    ("scrape_native_histograms", Kind::Bool),
    ("always_scrape_classic_histograms", Kind::Bool),
    // 2.45 to 2.55; renamed always_scrape_classic_histograms in 3.0.
    ("scrape_classic_histograms", Kind::Bool),
    ("convert_classic_histograms_to_nhcb", Kind::Bool),
    ("scrape_failure_log_file", Kind::Str),
    ("metrics_path", Kind::Str),
    ("scheme", Kind::Str),
    ("enable_compression", Kind::Bool),
    ("body_size_limit", Kind::Str),
    ("sample_limit", Kind::Uint),
    ("target_limit", Kind::Uint),
    ("label_limit", Kind::Uint),
    ("label_name_length_limit", Kind::Uint),
    ("label_value_length_limit", Kind::Uint),
    ("native_histogram_bucket_limit", Kind::Uint),
    ("native_histogram_min_bucket_factor", Kind::Float),
    ("keep_dropped_targets", Kind::Uint),
    ("metric_name_validation_scheme", Kind::Str),
    ("metric_name_escaping_scheme", Kind::Str),
    ("extra_scrape_metrics", Kind::Bool),
    ("relabel_configs", Kind::List(&RELABEL_CONFIG)),
    ("metric_relabel_configs", Kind::List(&RELABEL_CONFIG)),
    ("static_configs", Kind::List(&STATIC_CONFIG)),
];

/// The service discovery lists a scrape config may hold (Prometheus' configuration docs,
/// `<scrape_config>`); their entries are kept as written.
pub const SD_CONFIGS: &[&str] = &[
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "file_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "http_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "stackit_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

/// `config.HTTPClientConfig` (prometheus/common config/http_config.go), inlined in scrape configs.
const HTTP_CLIENT: &[(&str, Kind)] = &[
    ("basic_auth", Kind::Struct(&BASIC_AUTH)),
    ("authorization", Kind::Struct(&AUTHORIZATION)),
    ("oauth2", Kind::Struct(&OAUTH2)),
    ("bearer_token", Kind::Secret),
    ("bearer_token_file", Kind::Str),
    ("tls_config", Kind::Struct(&TLS_CONFIG)),
    ("follow_redirects", Kind::Bool),
    ("enable_http2", Kind::Bool),
    ("http_headers", Kind::Headers),
];

/// `config.ProxyConfig`, inlined in `HTTPClientConfig` and `OAuth2`.
const PROXY: &[(&str, Kind)] = &[
    ("proxy_url", Kind::Str),
    ("no_proxy", Kind::Str),
    ("proxy_from_environment", Kind::Bool),
    ("proxy_connect_header", Kind::StrListMap),
];

pub static SCRAPE_CONFIG: Type = Type {
    go: "config.ScrapeConfig",
    parts: &[SCRAPE_OWN, HTTP_CLIENT, PROXY],
    discovery: true,
    rules: Some(scrape_config_rules),
};

pub static TLS_CONFIG: Type = Type {
    go: "config.TLSConfig",
    parts: &[&[
        ("ca", Kind::Str),
        ("cert", Kind::Str),
        ("key", Kind::Secret),
        ("ca_file", Kind::Str),
        ("cert_file", Kind::Str),
        ("key_file", Kind::Str),
        ("ca_ref", Kind::Str),
        ("cert_ref", Kind::Str),
        ("key_ref", Kind::Str),
        ("server_name", Kind::Str),
        ("insecure_skip_verify", Kind::Bool),
        ("min_version", Kind::TlsVersion),
        ("max_version", Kind::TlsVersion),
        ("next_protos", Kind::StrList),
    ]],
    discovery: false,
    rules: Some(tls_rules),
};

pub static BASIC_AUTH: Type = Type {
    go: "config.BasicAuth",
    parts: &[&[
        ("username", Kind::Secret),
        ("username_file", Kind::Str),
        ("username_ref", Kind::Str),
        ("password", Kind::Secret),
        ("password_file", Kind::Str),
        ("password_ref", Kind::Str),
    ]],
    discovery: false,
    rules: Some(basic_auth_rules),
};

pub static AUTHORIZATION: Type = Type {
    go: "config.Authorization",
    parts: &[&[
        ("type", Kind::Str),
        ("credentials", Kind::Secret),
        ("credentials_file", Kind::Str),
        ("credentials_ref", Kind::Str),
    ]],
    discovery: false,
    rules: Some(authorization_rules),
};

pub static OAUTH2: Type = Type {
    go: "config.OAuth2",
    parts: &[
        &[
            ("client_id", Kind::Str),
            ("client_secret", Kind::Secret),
            ("client_secret_file", Kind::Str),
            ("client_secret_ref", Kind::Str),
            ("client_certificate_key_id", Kind::Str),
            ("client_certificate_key", Kind::Secret),
            ("client_certificate_key_file", Kind::Str),
            ("grant_type", Kind::Str),
            ("signature_algorithm", Kind::Str),
            ("iss", Kind::Str),
            ("audience", Kind::Str),
            ("claims", Kind::Any),
            ("scopes", Kind::StrList),
            ("token_url", Kind::Str),
            ("endpoint_params", Kind::StrMap),
            ("tls_config", Kind::Struct(&TLS_CONFIG)),
        ],
        PROXY,
    ],
    discovery: false,
    rules: Some(oauth2_rules),
};

/// One entry of `http_headers` (`config.Header`).
pub static HEADER: Type = Type {
    go: "config.Header",
    parts: &[&[
        ("values", Kind::StrList),
        ("secrets", Kind::StrList),
        ("files", Kind::StrList),
    ]],
    discovery: false,
    rules: None,
};

pub static RELABEL_CONFIG: Type = Type {
    go: "relabel.Config",
    parts: &[&[
        ("source_labels", Kind::LabelNames),
        ("separator", Kind::Str),
        ("regex", Kind::Regex),
        ("modulus", Kind::Uint),
        ("target_label", Kind::Str),
        ("replacement", Kind::Str),
        ("action", Kind::Action),
    ]],
    discovery: false,
    rules: Some(relabel_rules),
};

pub static STATIC_CONFIG: Type = Type {
    go: "targetgroup.Group",
    parts: &[&[("targets", Kind::StrList), ("labels", Kind::Labels)]],
    discovery: false,
    rules: None,
};

pub static RULE_GROUP: Type = Type {
    go: "rulefmt.RuleGroup",
    parts: &[&[
        ("name", Kind::Str),
        ("interval", Kind::Duration),
        ("query_offset", Kind::Duration),
        ("limit", Kind::Uint),
        ("labels", Kind::Labels),
        ("rules", Kind::List(&RULE)),
    ]],
    discovery: false,
    rules: Some(rule_group_rules),
};

pub static RULE: Type = Type {
    go: "rulefmt.RuleNode",
    parts: &[&[
        ("record", Kind::Str),
        ("alert", Kind::Str),
        ("expr", Kind::Str),
        ("for", Kind::Duration),
        ("keep_firing_for", Kind::Duration),
        ("labels", Kind::Labels),
        ("annotations", Kind::StrMap),
    ]],
    discovery: false,
    rules: Some(rule_rules),
};

/// The relabel actions (case-insensitive, like Prometheus).
pub(super) const ACTIONS: &[&str] = &[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

pub(super) const TLS_VERSIONS: &[&str] = &["TLS10", "TLS11", "TLS12", "TLS13"];
