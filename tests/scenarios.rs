//! Scenario tests as data: every folder of `tests/scenarios` is run through
//! the binary with 1 and 3 workers and must give exactly its expected rows.

use orderflow_tests as common;

use std::path::Path;

use common::{rows, run, scratch, OUTPUTS};
use serde_json::Value;

/// Whether `actual` matches `expected`, where an expected `"*"` matches anything.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(s), _) if s == "*" => true,
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
        }
        _ => expected == actual,
    }
}

/// The expected rows that no actual row matched and the actual rows left
/// over, pairing each expected row with its first unused match.
fn unmatched(expected: &[Value], actual: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut left: Vec<Option<&Value>> = actual.iter().map(Some).collect();
    let mut missing = Vec::new();
    for e in expected {
        match left.iter_mut().find(|a| a.is_some_and(|a| matches(e, a))) {
            Some(slot) => *slot = None,
            None => missing.push(e.clone()),
        }
    }
    (missing, left.into_iter().flatten().cloned().collect())
}

fn check(scenario: &Path, workers: usize) -> Vec<String> {
    let name = scenario.file_name().unwrap().to_string_lossy().to_string();
    let out = scratch(&format!("scenario-{name}-w{workers}"));
    let args = std::fs::read_to_string(scenario.join("args")).unwrap_or_default();
    let workers = workers.to_string();
    let mut extra: Vec<&str> = args.split_whitespace().collect();
    extra.extend(["--workers", &workers]);
    let source = format!("file:{}", scenario.join("orders.jsonl").display());
    run(&source, &out, &extra);
    let mut failures = Vec::new();
    for output in OUTPUTS {
        let (missing, extra) = unmatched(&rows(scenario, output), &rows(&out, output));
        for row in missing {
            failures.push(format!(
                "{name} (workers {workers}) {output}: missing {row}"
            ));
        }
        for row in extra {
            failures.push(format!(
                "{name} (workers {workers}) {output}: unexpected {row}"
            ));
        }
    }
    failures
}

#[test]
fn every_scenario_gives_its_expected_rows() {
    let root = common::project("tests/scenarios");
    let mut scenarios: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("orders.jsonl").is_file())
        .collect();
    scenarios.sort();
    assert!(
        scenarios.len() >= 7,
        "scenarios not found under {}",
        root.display()
    );
    let failures: Vec<String> = scenarios
        .iter()
        .flat_map(|s| [1, 3].map(|w| check(s, w)))
        .flatten()
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_matcher_can_fail() {
    let row = |v: &str| serde_json::from_str::<Value>(v).unwrap();
    assert!(matches(
        &row(r#"{"a":"*","b":1}"#),
        &row(r#"{"a":5,"b":1}"#)
    ));
    assert!(!matches(
        &row(r#"{"a":"*","b":1}"#),
        &row(r#"{"a":5,"b":2}"#)
    ));
    assert!(!matches(&row(r#"{"a":1}"#), &row(r#"{"a":1,"b":2}"#)));
    let (missing, extra) = unmatched(&[row("1"), row("1")], &[row("1"), row("2")]);
    assert_eq!((missing, extra), (vec![row("1")], vec![row("2")]));
}
