//! Running the real `orderflow` binary and reading what it wrote.

#![allow(dead_code)]

use std::ffi::OsStr;
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

/// A path in this checkout. Taken from the environment `cargo test` gives
/// the process, not from `env!`: a shared target directory reuses test
/// binaries built in other clones, whose compile-time path may be gone.
pub fn project(path: &str) -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("tests run by cargo");
    Path::new(&manifest).join("..").join(path)
}

/// Runs `scripts/SCRIPT ACTION` with `envs`, asserting it succeeds; returns
/// what it prints (a server's address for `start`).
pub fn server(script: &str, action: &str, envs: &[(&str, &OsStr)]) -> String {
    let out = Command::new(project("scripts").join(script))
        .arg(action)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("scripts/{script} runs: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The test broker's address: `scripts/kafka.sh start` (idempotent) makes
/// sure a real one is listening.
pub fn kafka() -> String {
    static ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDRESS
        .get_or_init(|| server("kafka.sh", "start", &[]))
        .clone()
}

/// A topic name no earlier run used: the broker keeps its data.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Every record of `topic` as (partition, key, value), read to the end
/// offsets of the moment with a plain consumer.
pub fn consume_all(broker: &str, topic: &str) -> Vec<(i32, Option<String>, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let timeout = std::time::Duration::from_secs(30);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", "orderflow-tests")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
        assignment
            .add_partition_offset(topic, p.id(), Offset::Offset(low))
            .unwrap();
        remaining += high - low;
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    while remaining > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: timed out reading"
        );
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(100)) {
            let message = message.unwrap();
            records.push((
                message.partition(),
                message
                    .key()
                    .map(|k| String::from_utf8(k.to_vec()).unwrap()),
                String::from_utf8(message.payload().unwrap().to_vec()).unwrap(),
            ));
            remaining -= 1;
        }
    }
    records
}
