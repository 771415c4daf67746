//! Running the real `orderflow` binary and reading what it wrote.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const OUTPUTS: [&str; 5] = ["events", "trades", "bbo", "candles", "late"];

/// A fresh directory under the target's temp area.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("orderflow-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `orderflow` with `args`, asserting it exits 0; returns its stdout.
pub fn orderflow(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args(args)
        .output()
        .expect("orderflow runs");
    assert!(
        out.status.success(),
        "orderflow {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `orderflow run --quiet --source SOURCE --sink dir:OUT EXTRA…`
pub fn run(source: &str, out: &Path, extra: &[&str]) {
    let sink = format!("dir:{}", out.display());
    let mut args = vec!["run", "--quiet", "--source", source, "--sink", &sink];
    args.extend_from_slice(extra);
    orderflow(&args);
}

/// The rows of one output, as JSON values; a missing file has none.
pub fn rows(dir: &Path, output: &str) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{output}.jsonl"))) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{output}: bad JSON {l}: {e}")))
        .collect()
}

/// Rows as sorted text, for comparing outputs as multisets.
pub fn sorted(rows: &[Value]) -> Vec<String> {
    let mut lines: Vec<String> = rows.iter().map(Value::to_string).collect();
    lines.sort();
    lines
}
