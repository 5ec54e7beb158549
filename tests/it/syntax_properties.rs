//! promfed's own PromQL parser (`promql::syntax`) against the full path (`promql::parse`,
//! promql-parser underneath) on PromQL text made from the grammar
//! (`support::promql_grammar`): whatever the fast parser reads, the full path reads, to an
//! equal AST, with sound spans; and the fast parser reads most of what the full path reads, so
//! the first property is not passed by refusing everything. The checks are the fuzz target's
//! (`fuzz/src/promql_syntax.rs`, included here by path).
//!
//! `PROPTEST_CASES=20000 cargo test --test tests syntax_properties::` runs them longer.

use std::cell::Cell;
use std::path::Path;

use proptest::strategy::Strategy;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRng, TestRunner};
use serde_json::Value;

use crate::support::promql_grammar::expression;
use crate::support::{read_data, root};

#[allow(clippy::duplicate_mod)]
#[path = "../../fuzz/src/promql_syntax.rs"]
mod oracle;

/// Cases per property: `PROPTEST_CASES` when set, else `default`, which the busy 2-core CI
/// machine runs in seconds.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The least share of the generated texts the full path reads for which the fast parser must
/// read them too. The parser as it landed read 72 of the 115 valid texts of the 256 default
/// cases (63%), and 5312 of 7818 over 20000 cases (68%); it leaves the rest to the full path.
const FAST_SHARE_FLOOR: f64 = 0.5;
/// The least share of generated texts the full path reads: the generator makes mostly
/// valid PromQL, or the properties say little.
const VALID_SHARE_FLOOR: f64 = 0.25;

/// Whatever the fast parser reads, the full path reads to an equal AST (`oracle::check`);
/// a failing text is shrunk to a smaller one that fails too.
#[test]
fn fast_parser_reads_as_the_crate_does() {
    on_big_stack(|| {
        let mut runner = TestRunner::new(Config {
            cases: cases(256),
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&expression(), |text| {
            oracle::check(&text);
            Ok(())
        }) {
            panic!("{e}");
        }
    });
}

/// Of the generated texts the full path reads, the fast parser reads a good share (counted
/// over a fixed seed, so the figure is the same on every run with the same case count).
#[test]
fn fast_parser_reads_most_valid_generated_expressions() {
    on_big_stack(|| {
        let config = Config {
            cases: cases(256),
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::deterministic_rng(config.rng_algorithm);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let (total, full, fast) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
        let result = runner.run(&expression(), |text| {
            let verdict = oracle::check(&text);
            total.set(total.get() + 1);
            full.set(full.get() + u32::from(verdict.full));
            fast.set(fast.get() + u32::from(verdict.fast));
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        let (total, full, fast) = (total.get(), full.get(), fast.get());
        eprintln!("generated {total}: the full path read {full}, the fast parser {fast}");
        assert!(
            f64::from(full) >= VALID_SHARE_FLOOR * f64::from(total),
            "only {full} of {total} generated texts are valid PromQL"
        );
        assert!(
            f64::from(fast) >= FAST_SHARE_FLOOR * f64::from(full),
            "the fast parser read only {fast} of the {full} valid texts"
        );
    });
}

/// Run `f` on a thread with a 64 MiB stack (the generator recurses deeply in a debug build),
/// failing as `f` fails.
fn on_big_stack(f: impl FnOnce() + Send + 'static) {
    let thread = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap();
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Writes the seed corpus of the `promql_syntax` fuzz target, `fuzz/corpus/promql_syntax/`
/// (not in git): every corpus rule expression, every dashboard expression (template tokens
/// protected), and 1000 texts from the grammar. Run by hand before fuzzing:
/// `cargo test --test tests syntax_properties::write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/promql_syntax/ for cargo fuzz"]
fn write_fuzz_seeds() {
    on_big_stack(write_seeds);
}

fn write_seeds() {
    let mut seeds: Vec<String> = read_data("rules/all_exprs.txt")
        .split("\n---\n")
        .map(str::to_string)
        .collect();
    for dir in [
        root().join("dashboards"),
        crate::support::data("dashboards"),
    ] {
        seeds.extend(dashboard_expressions(&dir));
    }
    let mut runner = TestRunner::deterministic();
    let grammar = expression();
    for _ in 0..1000 {
        seeds.push(grammar.new_tree(&mut runner).unwrap().current());
    }
    let out = root().join("fuzz/corpus/promql_syntax");
    std::fs::create_dir_all(&out).unwrap();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(out.join(format!("seed-{i:05}")), seed).unwrap();
    }
    eprintln!("{} seeds in {}", seeds.len(), out.display());
}

fn dashboard_expressions(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for e in promfed::dashboard::expressions(&dashboard) {
            if let Ok(protected) = promfed::dashboard::protect(&e.text) {
                out.push(protected.text);
            }
        }
    }
    out
}
