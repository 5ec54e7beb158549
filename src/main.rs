#![forbid(unsafe_code)]
//! The `promfed` command: parse arguments, call the library, map errors to exit codes.
//! Exit 0 ok, 1 invalid input, 2 usage. `render --diff` and `check --objects` exit like
//! `diff`: 0 no changes, 1 changes, 2 trouble (invalid input or usage).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use promfed::engine::operator::scrape_config;
use promfed::object::Kind;
use promfed::render::{
    check_objects, diff_view, parse_resource_list, render_resource_list, render_stream,
    resource_list_config, unified_diff,
};
use promfed::{Config, Engine, config};

/// mimalloc instead of glibc's allocator: an uncached review allocates and frees tens of
/// thousands of small nodes (PromQL and YAML trees), and glibc's allocator took a third of its
/// time, page faults included (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The TKG prometheus-server ConfigMap, for `render --example`.
const EXAMPLE_CONFIGMAP: &str = include_str!("../tests/data/tkg/prometheus-server-configmap.yaml");

#[derive(Debug, Parser)]
#[command(
    name = "promfed",
    version,
    about = "Make a Prometheus the hub of a multi-cluster federation: rewrite its \
             prometheus-server ConfigMap, or its prometheus-operator PrometheusRule and \
             Prometheus objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rewrite the ConfigMaps, PrometheusRules and Prometheus objects the config selects in a
    /// manifest stream (file or stdin; the items of a `kind: List` too) to stdout.
    Render {
        /// promfed config file. Required, except with --example (the seed's config unless
        /// given) and for a KRM ResourceList whose functionConfig carries it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print a unified diff of what would change instead of the stream, and exit like
        /// `diff`: 0 no changes, 1 changes, 2 trouble (also: nothing in the input selected).
        #[arg(long)]
        diff: bool,
        /// Use the bundled example TKG prometheus-server ConfigMap as input, with the seed's
        /// config unless --config gives one.
        #[arg(long, conflicts_with = "input")]
        example: bool,
        /// Write the config's federation jobs as prometheus-operator ScrapeConfig objects
        /// (a YAML stream, one per workload cluster; with federationAlerts.enabled, a
        /// PrometheusRule too) instead of rendering a stream. Opening comments list the
        /// Secrets and ConfigMaps they read.
        #[arg(long, conflicts_with_all = ["input", "example", "diff"])]
        scrape_configs: bool,
        /// Manifest file, or `-` for stdin (default).
        input: Option<PathBuf>,
    },
    /// Validate a promfed config file as every front door reads it (webhook, render,
    /// render --scrape-configs): print the federation jobs it makes and its warnings.
    Check {
        /// promfed config file (like `promtool check config FILE`).
        #[arg(
            value_name = "FILE",
            required_unless_present = "config",
            conflicts_with = "config"
        )]
        file: Option<PathBuf>,
        /// promfed config file (the same as FILE).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also check objects as stored (a manifest stream or a List, e.g. `kubectl get
        /// prometheusrules -A -o yaml`; `-` for stdin): print every object the config selects
        /// that `render` would change, and exit like `diff`: 0 none, 1 some, 2 trouble.
        #[arg(long, value_name = "FILE")]
        objects: Option<PathBuf>,
    },
    /// Print the `matchConditions` of promfed's MutatingWebhookConfiguration for a config:
    /// the API server then sends promfed exactly the objects of the kind the config selects.
    MatchConditions {
        /// promfed config file (default: the embedded example, deploy/base/promfed.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The kind whose webhook the conditions are for: ConfigMap (default), PrometheusRule
        /// or Prometheus.
        #[arg(long, default_value = "ConfigMap")]
        kind: String,
    },
    /// Run the HTTPS admission webhook.
    Serve(promfed::server::ServeArgs),
    /// Make a Grafana dashboard multi-cluster: add a cluster variable and scope every PromQL
    /// query with `<label>=~"$<variable>"`; the dashboard goes to stdout.
    Dashboard {
        /// The label that names a series' cluster.
        #[arg(long, default_value = "cluster")]
        label: String,
        /// The dashboard variable that selects clusters (added if missing).
        #[arg(long, default_value = "cluster")]
        variable: String,
        /// Dashboard JSON file, or `-` for stdin (default).
        input: Option<PathBuf>,
    },
}

/// What a command found, when it did not fail.
enum Done {
    Ok,
    /// `render --diff` found changes: exit 1, as `diff` and `git diff --exit-code` do.
    Changes,
}

/// An error for the user, printed once to stderr.
enum Failure {
    /// Invalid input or config: exit 1.
    Invalid(String),
    /// Arguments that don't make sense together, found after parsing: exit 2.
    Usage(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // With --diff, 1 means "changes"; trouble of any kind is 2, as for diff(1).
    let diffing = matches!(
        cli.command,
        Command::Render { diff: true, .. }
            | Command::Check {
                objects: Some(_),
                ..
            }
    );
    let result = match cli.command {
        Command::Render {
            config,
            scrape_configs: true,
            ..
        } => write_scrape_configs(config.as_deref()),
        Command::Render {
            config,
            diff,
            example,
            input,
            scrape_configs: false,
        } => render(config.as_deref(), diff, example, input.as_deref()),
        Command::Check {
            file,
            config,
            objects,
        } => match file.or(config) {
            Some(path) => check(&path).and_then(|done| match objects {
                Some(objects) => check_stored(&path, &objects),
                None => Ok(done),
            }),
            None => Err(Failure::Usage("check needs a config FILE".into())),
        },
        Command::MatchConditions { config, kind } => match_conditions(config.as_deref(), &kind),
        Command::Dashboard {
            label,
            variable,
            input,
        } => dashboard(&label, &variable, input.as_deref()),
        Command::Serve(args) => promfed::server::run(args)
            .map(|()| Done::Ok)
            .map_err(|e| Failure::Invalid(format!("{e:#}"))),
    };
    match result {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Changes) => ExitCode::from(1),
        Err(Failure::Invalid(message)) => {
            eprintln!("promfed: {message}");
            ExitCode::from(if diffing { 2 } else { 1 })
        }
        Err(Failure::Usage(message)) => {
            eprintln!("promfed: usage: {message}");
            ExitCode::from(2)
        }
    }
}

fn load_engine(path: Option<&Path>) -> Result<Engine, Failure> {
    let (name, text) = match path {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
        ),
        None => (
            "embedded example config".to_string(),
            config::EXAMPLE.to_string(),
        ),
    };
    engine_from_text(&name, &text)
}

fn engine_from_text(name: &str, text: &str) -> Result<Engine, Failure> {
    let config = Config::from_yaml(text).map_err(|e| Failure::Invalid(format!("{name}: {e}")))?;
    Engine::new(config).map_err(|e| Failure::Invalid(format!("{name}: {e}")))
}

fn render(
    config: Option<&Path>,
    diff: bool,
    example: bool,
    input: Option<&Path>,
) -> Result<Done, Failure> {
    let (name, text) = if example {
        (
            "prometheus-server-configmap.yaml".to_string(),
            EXAMPLE_CONFIGMAP.to_string(),
        )
    } else {
        match input {
            None => read_stdin()?,
            Some(path) if path == Path::new("-") => read_stdin()?,
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
            ),
        }
    };
    // A KRM function call (kustomize `transformers:`, kpt): a ResourceList on stdin, whose
    // functionConfig may carry the promfed config.
    if let Some(list) = (!example).then(|| parse_resource_list(&text)).flatten() {
        if diff {
            return Err(Failure::Usage(
                "--diff compares a manifest stream; a KRM ResourceList is rendered without it"
                    .into(),
            ));
        }
        let engine = match (config, resource_list_config(&list)) {
            (Some(path), _) => load_engine(Some(path))?,
            (None, Some(text)) => engine_from_text("functionConfig", &text)?,
            (None, None) => {
                return Err(Failure::Usage(
                    "ResourceList: give --config or a functionConfig ConfigMap with data[\"promfed.yaml\"]".into(),
                ));
            }
        };
        let rendered = render_resource_list(&engine, list)
            .map_err(|e| Failure::Invalid(format!("{name}: {e}")))?;
        for warning in &rendered.warnings {
            eprintln!("promfed: warning: {name}: {warning}");
        }
        return write_stdout(rendered.text.as_bytes());
    }
    // --example with --config renders the example ConfigMap with that config.
    let engine = match (config, example) {
        (Some(path), _) => load_engine(Some(path))?,
        (None, true) => load_engine(None)?,
        (None, false) => {
            return Err(Failure::Usage(
                "render needs --config FILE (or --example)".into(),
            ));
        }
    };
    let rendered =
        render_stream(&engine, &text).map_err(|e| Failure::Invalid(format!("{name}: {e}")))?;
    for warning in &rendered.warnings {
        eprintln!("promfed: warning: {name}: {warning}");
    }
    // An input with nothing promfed rewrites is said so: an empty output diff would look
    // like "already federated". A diff of it is trouble (exit 2), since nothing was compared;
    // a stream passed through (helm post-renderer) is not.
    if let Some(nothing) = rendered.nothing_selected() {
        if diff {
            return Err(Failure::Invalid(format!("{name}: {nothing}")));
        }
        eprintln!("promfed: note: {name}: {nothing}");
    }
    if !diff {
        return write_stdout(rendered.text.as_bytes());
    }
    if rendered.text == text {
        eprintln!(
            "promfed: {name}: {} selected object{}, no change",
            rendered.matched,
            if rendered.matched == 1 { "" } else { "s" },
        );
        return Ok(Done::Ok);
    }
    // JSON documents are compared as YAML (what render writes for them), line by line.
    let (before, after) = (diff_view(&text), diff_view(&rendered.text));
    write_stdout(unified_diff(&name, &before, &after).as_bytes())?;
    Ok(Done::Changes)
}

fn check(path: &Path) -> Result<Done, Failure> {
    let engine = load_engine(Some(path))?;
    let config = engine.config();
    let name = path.display();
    // The jobs as rendered: a raw job with targets of several clusters is one job each.
    let jobs: Vec<&str> = engine.federation_jobs().collect();
    let listed = if jobs.is_empty() {
        String::new()
    } else {
        format!(": {}", jobs.join(", "))
    };
    for warning in engine.config_warnings() {
        eprintln!("promfed: warning: {name}: {warning}");
    }
    // One validation for every front door: what `render --scrape-configs` would refuse is
    // refused here when the config has `operator:` settings (it is meant for that path), and
    // a warning naming that path otherwise (the ConfigMap path takes it).
    if let Err(e) = engine.scrape_configs() {
        let operator = &config.operator.scrape_configs;
        let message = format!(
            "{name}: render --scrape-configs (prometheus-operator's ScrapeConfig objects) \
             refuses it: {e}"
        );
        if operator.namespace.is_some() || !operator.labels.is_empty() {
            return Err(Failure::Invalid(message));
        }
        eprintln!(
            "promfed: warning: for prometheus-operator only: {message}; the ConfigMap path \
             (webhook, render) takes it as it is"
        );
    }
    // A config written for the operator path whose ScrapeConfigs no selector would pick up.
    if config.operator.scrape_configs.namespace.is_some()
        && !jobs.is_empty()
        && let Some(warning) = config.operator.selection_warning()
    {
        eprintln!("promfed: warning: {name}: {warning}");
    }
    println!(
        "{name}: ok (local cluster {:?}, label {:?}, {} federation job{}{listed})",
        config.local_cluster_name,
        config.cluster_label_name,
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
    );
    Ok(Done::Ok)
}

/// `render --scrape-configs`: the federation jobs as ScrapeConfig objects, a YAML stream.
fn write_scrape_configs(config: Option<&Path>) -> Result<Done, Failure> {
    let Some(path) = config else {
        return Err(Failure::Usage(
            "render --scrape-configs needs --config FILE".into(),
        ));
    };
    let engine = load_engine(Some(path))?;
    let name = path.display();
    let objects =
        (engine.scrape_configs()).map_err(|e| Failure::Invalid(format!("{name}: {e}")))?;
    if objects.is_empty() {
        eprintln!(
            "promfed: note: {name}: the config has no federation jobs: no ScrapeConfig to write"
        );
    }
    let settings = &engine.config().operator;
    if !objects.is_empty()
        && let Some(warning) = settings.selection_warning()
    {
        eprintln!("promfed: warning: {name}: {warning}");
    }
    let mut out = needs_comment(
        &scrape_config::references(&objects),
        settings.scrape_configs.namespace.as_deref(),
    );
    let mut documents: Vec<String> = objects.iter().map(promfed::yaml::emit).collect();
    documents.extend(
        engine
            .federation_alert_rule()
            .as_ref()
            .map(promfed::yaml::emit),
    );
    out.push_str(&documents.join("---\n"));
    write_stdout(out.as_bytes())
}

/// The Secrets and ConfigMaps the ScrapeConfig objects read, as comment lines opening the
/// stream: without them the operator logs `unable to get secret` and scrapes nothing.
fn needs_comment(references: &[scrape_config::Reference], namespace: Option<&str>) -> String {
    if references.is_empty() {
        return String::new();
    }
    let place = match namespace {
        Some(namespace) => format!("namespace {namespace}"),
        None => "the namespace they are applied in".to_string(),
    };
    let mut out = format!(
        "# These ScrapeConfigs read the following from {place}; create them first, or the\n\
         # operator logs `unable to get secret` and scrapes nothing:\n"
    );
    for reference in references {
        out.push_str(&format!(
            "#   {} {}: {}\n",
            reference.kind,
            reference.name,
            reference.keys.join(", ")
        ));
    }
    out
}

/// `check --objects`: the stored objects render would change.
fn check_stored(config: &Path, objects: &Path) -> Result<Done, Failure> {
    let engine = load_engine(Some(config))?;
    let (name, text) = if objects == Path::new("-") {
        read_stdin()?
    } else {
        (
            objects.display().to_string(),
            std::fs::read_to_string(objects)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", objects.display())))?,
        )
    };
    let checked =
        check_objects(&engine, &text).map_err(|e| Failure::Invalid(format!("{name}: {e}")))?;
    // Nothing selected: nothing was checked, which is no "0 changes" (as for render --diff).
    if let Some(nothing) = checked.nothing_selected() {
        return Err(Failure::Invalid(format!("{name}: {nothing}")));
    }
    let findings = checked.findings;
    let mut out = String::new();
    for finding in &findings {
        out.push_str(&format!("{name}: {finding}\n"));
    }
    out.push_str(&format!(
        "{name}: {} selected object{} not as promfed writes {}\n",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        if findings.len() == 1 { "it" } else { "them" },
    ));
    write_stdout(out.as_bytes())?;
    Ok(if findings.is_empty() {
        Done::Ok
    } else {
        Done::Changes
    })
}

fn match_conditions(path: Option<&Path>, kind: &str) -> Result<Done, Failure> {
    let Some(kind) = (Kind::ALL.iter().copied()).find(|k| k.name().eq_ignore_ascii_case(kind))
    else {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        return Err(Failure::Usage(format!(
            "--kind {kind:?} is not one of {}",
            names.join(", ")
        )));
    };
    let engine = load_engine(path)?;
    // YAML to paste under the webhook's `matchConditions:` (or to patch it with); each
    // expression as a JSON string, which is a valid YAML double-quoted scalar.
    let mut out = String::new();
    for condition in engine.config().match_conditions_for(kind) {
        let expression = serde_json::to_string(&condition.expression)
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        out.push_str(&format!(
            "- name: {}\n  expression: {expression}\n",
            condition.name
        ));
    }
    write_stdout(out.as_bytes())
}

fn dashboard(label: &str, variable: &str, input: Option<&Path>) -> Result<Done, Failure> {
    // A bad --label or --variable is a usage error, like any bad argument.
    let options = promfed::dashboard::Options::new(label, variable)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let (name, text) = match input {
        None => read_stdin()?,
        Some(path) if path == Path::new("-") => read_stdin()?,
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?,
        ),
    };
    let converted = promfed::dashboard::convert(&text, &options)
        .map_err(|e| Failure::Invalid(format!("{name}: {e}")))?;
    for warning in &converted.report.warnings {
        eprintln!("promfed: warning: {name}: {warning}");
    }
    write_stdout(converted.text.as_bytes())
}

fn read_stdin() -> Result<(String, String), Failure> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::Invalid(format!("stdin: {e}")))?;
    Ok(("stdin".to_string(), text))
}

/// Write to stdout; a closed stdout (`promfed render | head`) is a normal end.
fn write_stdout(bytes: &[u8]) -> Result<Done, Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Done::Ok),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Done::Ok),
        Err(e) => Err(Failure::Invalid(format!("stdout: {e}"))),
    }
}
