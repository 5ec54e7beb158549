//! Criterion benches of the rewrite: `render_stream` on the TKG ConfigMap and on a ~1 MB
//! ConfigMap holding every corpus rule, `Scoper::scope` over every distinct corpus
//! expression, promfed's PromQL parser next to promql-parser's on them, and the webhook's answer to the TKG review from the cache and from the engine. `cargo bench --bench render`; `scripts/bench.sh` compares the CLI with promtool
//! and the seed's overlay.
//!
//! The 1 MB ConfigMap is generated when the bench starts by `tests/peers/mkbig.py`, which needs
//! PyYAML: `PROMFED_PYTHON`, else the test venv's `.venv/bin/python` (`scripts/test-deps.sh`),
//! else `python3`. Without one, that bench is skipped with a line saying why.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use promfed::admission::{Admission, CacheUse, Outcome};
use promfed::promql::{Policy, ScopeOp, Scoper};
use promfed::render::render_stream;
use promfed::{Config, Engine};

/// The binary's allocator (src/main.rs), so the engine is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn seed_engine() -> Engine {
    let config = Config::from_yaml(&read("tests/data/example-config.yaml")).expect("seed config");
    Engine::new(config).expect("seed config is valid")
}

/// A Python that can `import yaml`, or why there is none.
fn python() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = std::env::var_os("PROMFED_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain([root().join(".venv/bin/python"), PathBuf::from("python3")])
        .collect();
    for python in &candidates {
        let imports = Command::new(python)
            .args(["-c", "import yaml"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imports {
            return Ok(python.clone());
        }
    }
    Err(format!(
        "no Python with PyYAML among {} (run scripts/test-deps.sh)",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The ~1 MB ConfigMap of `tests/peers/mkbig.py`.
fn big_configmap() -> Result<String, String> {
    let python = python()?;
    let script = root().join("tests/peers/mkbig.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(root().join("tests/data"))
        .arg("1000000")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("mkbig.py wrote non-UTF-8: {e}"))
}

fn render(c: &mut Criterion) {
    let engine = seed_engine();
    let mut group = c.benchmark_group("render");

    let tkg = read("tests/data/tkg/prometheus-server-configmap.yaml");
    group.throughput(Throughput::Bytes(tkg.len() as u64));
    group.bench_function("tkg", |b| {
        b.iter(|| render_stream(&engine, black_box(&tkg)).expect("renders"))
    });

    match big_configmap() {
        Ok(big) => {
            let rendered = render_stream(&engine, &big).expect("the big ConfigMap renders");
            assert_eq!(rendered.changed, 1, "the big ConfigMap is rewritten");
            group.throughput(Throughput::Bytes(big.len() as u64));
            // ~100 ms an iteration: fewer samples keep the bench under a minute on 2 cores.
            group.sample_size(20);
            group.bench_function("big_1mb", |b| {
                b.iter(|| render_stream(&engine, black_box(&big)).expect("renders"))
            });
        }
        Err(why) => eprintln!("SKIPPED render/big_1mb: {why}"),
    }
    group.finish();
}

/// Every distinct expression of the corpus (`---` lines separate them).
fn corpus_exprs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("all_exprs.txt");
    let mut exprs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            exprs.push(String::new());
        } else {
            let expr = exprs.last_mut().expect("one expr at least");
            if !expr.is_empty() {
                expr.push('\n');
            }
            expr.push_str(line);
        }
    }
    exprs
}

fn scope(c: &mut Criterion) {
    let exprs = corpus_exprs(&root().join("tests/data/rules/all_exprs.txt"));
    assert_eq!(
        exprs.len(),
        840,
        "tests/data/rules/all_exprs.txt holds 840 exprs"
    );
    let scoper = Scoper::new("cluster", "local", ScopeOp::Equal, Policy::Keep);
    for expr in &exprs {
        scoper.scope(expr).unwrap_or_else(|e| panic!("{e}: {expr}"));
    }
    let mut group = c.benchmark_group("scope");
    group.throughput(Throughput::Elements(exprs.len() as u64));
    group.bench_function("all_exprs", |b| {
        b.iter(|| {
            for expr in &exprs {
                black_box(scoper.scope(black_box(expr)).expect("scopes"));
            }
        })
    });
    group.finish();
}

/// Parsing the 840 distinct corpus expressions: promfed's own parser (`parse/own`) next to
/// `promql-parser` (`parse/promql_parser`, the crate's `parse` on the same texts), the
/// reference it replaces on the scoper's fast path.
fn parse(c: &mut Criterion) {
    let exprs = corpus_exprs(&root().join("tests/data/rules/all_exprs.txt"));
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(exprs.len() as u64));
    group.bench_function("own", |b| {
        b.iter(|| {
            for expr in &exprs {
                black_box(promfed::promql::syntax::parse(black_box(expr)));
            }
        })
    });
    group.bench_function("promql_parser", |b| {
        b.iter(|| {
            for expr in &exprs {
                let _ = black_box(promql_parser::parser::parse(black_box(expr)));
            }
        })
    });
    group.finish();
}

/// `Admission::review` of the TKG ConfigMap's review: answered from the cache (what a
/// re-apply costs), and by the engine with a cold cache.
fn review(c: &mut Criterion) {
    let engine = seed_engine();
    let body = read("tests/data/review-tkg.json").into_bytes();
    let admission = Admission::new(engine.clone(), 1);
    assert_eq!(admission.review(&body).outcome, Outcome::Mutated);
    let mut group = c.benchmark_group("review");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("tkg_cached", |b| {
        b.iter(|| {
            let reply = admission.review(black_box(&body));
            assert_eq!(reply.cache, CacheUse::Hit);
            reply
        })
    });
    group.bench_function("tkg_engine", |b| {
        b.iter_batched(
            || Admission::new(engine.clone(), 1),
            |admission| admission.review(black_box(&body)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, render, scope, parse, review);
criterion_main!(benches);
