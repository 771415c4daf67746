//! The Kafka source and sink against a real broker (`scripts/kafka.sh`).

use orderflow_tests as common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::assert_topics_hold;
use common::clickhouse::{assert_same, clickhouse, database, ViewRows};
use common::{
    assert_same_outputs, assert_same_rows, checkpointed_args, consume_all, kafka, orderflow, rows,
    run, run_with_kills, scratch, sorted, unique, OUTPUTS,
};
use serde_json::Value;

/// The generated stream every test here produces: 20 symbols over 4
/// partitions; message `i` has event time (and record timestamp) `T0 + i`.
const ORDERS: u64 = 20_000;
const T0: i64 = 1_700_000_000_000;
const GEN: [&str; 6] = ["--orders", "20000", "--symbols", "20", "--seed", "11"];

/// Produces the stream to a new 4-partition topic and writes the same
/// orders to a file; returns (source address, file).
fn produce(name: &str) -> (String, std::path::PathBuf) {
    let topic = unique(name);
    let source = format!("kafka://{}/{topic}", kafka());
    let mut args = vec!["gen", "--to", &source, "--partitions", "4"];
    args.extend(GEN);
    orderflow(&args);
    let file = scratch(name).join("orders.jsonl");
    let path = file.to_str().unwrap();
    let mut args = vec!["gen", "--out", path, "--partitions", "4"];
    args.extend(GEN);
    orderflow(&args);
    (source, file)
}

/// Events comparable across sources, sorted: a malformed message has no
/// `ts` of its own (it takes the record timestamp from Kafka and the
/// ingestion time from a file).
fn comparable_events(rows: Vec<Value>) -> Vec<String> {
    sorted(&common::comparable_events(rows))
}

#[test]
fn a_topic_runs_alike_on_one_and_three_workers_and_like_its_file() {
    let (source, file) = produce("workers");
    let dir = scratch("kafka-workers");
    let runs: Vec<_> = ["1", "3"]
        .iter()
        .map(|workers| {
            let out = dir.join(format!("w{workers}"));
            run(&source, &out, &["--stop", "latest", "--workers", workers]);
            out
        })
        .collect();
    assert_eq!(rows(&runs[0], "events").len() as u64, ORDERS);
    assert!(!rows(&runs[0], "trades").is_empty());
    for output in OUTPUTS {
        let (one, three) = (rows(&runs[0], output), rows(&runs[1], output));
        assert_same_rows(output, &one, &three, "between 1 and 3 workers");
    }
    let from_file = dir.join("file");
    run(&format!("file:{}", file.display()), &from_file, &[]);
    for output in ["trades", "bbo"] {
        assert!(
            sorted(&rows(&runs[0], output)) == sorted(&rows(&from_file, output)),
            "{output} differs from the file run"
        );
    }
    assert!(
        comparable_events(rows(&runs[0], "events"))
            == comparable_events(rows(&from_file, "events")),
        "events differ from the file run"
    );
}

#[test]
fn start_and_stop_timestamps_split_the_stream_exactly() {
    let (source, file) = produce("timestamps");
    let dir = scratch("kafka-timestamps");
    let split = T0 + 12_345;
    let before = dir.join("before");
    run(&source, &before, &["--stop", &format!("timestamp:{split}")]);
    let after = dir.join("after");
    run(
        &source,
        &after,
        &["--start", &format!("timestamp:{split}"), "--stop", "latest"],
    );
    assert_eq!(rows(&before, "events").len(), 12_345);
    assert_eq!(rows(&after, "events").len() as u64, ORDERS - 12_345);
    // Each part is exactly a run over its lines of the file: the records
    // before the split, then the ones at or after it, none twice.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (part, range) in [(&before, 0..12_345), (&after, 12_345..lines.len())] {
        let part_file = dir.join("part.jsonl");
        let body: String = lines[range].iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&part_file, body).unwrap();
        let from_file = dir.join("file");
        run(&format!("file:{}", part_file.display()), &from_file, &[]);
        assert!(sorted(&rows(part, "trades")) == sorted(&rows(&from_file, "trades")));
        assert!(
            comparable_events(rows(part, "events"))
                == comparable_events(rows(&from_file, "events"))
        );
    }
}

#[test]
fn explicit_offsets_and_committed_offsets_resume_where_told() {
    let (source, _) = produce("offsets");
    let dir = scratch("kafka-offsets");
    let group = unique("group");
    // Read everything once as a consumer group, which commits on the way out.
    let first = dir.join("first");
    run(&source, &first, &["--stop", "latest", "--group", &group]);
    assert_eq!(rows(&first, "events").len() as u64, ORDERS);
    // Resuming from the group's offsets finds nothing left.
    let resumed = dir.join("resumed");
    run(
        &source,
        &resumed,
        &[
            "--start",
            "committed",
            "--stop",
            "latest",
            "--group",
            &group,
        ],
    );
    assert_eq!(rows(&resumed, "events").len(), 0);
    // Explicit offsets skip that many records of the partition.
    let per_partition: Vec<usize> = (0..4)
        .map(|p| {
            rows(&first, "events")
                .iter()
                .filter(|e| {
                    e["symbol"]
                        .as_str()
                        .is_some_and(|s| s[3..].parse::<u32>().unwrap() % 4 == p)
                })
                .count()
        })
        .collect();
    let skipped = dir.join("skipped");
    run(
        &source,
        &skipped,
        &[
            "--start",
            "offsets:2=100",
            "--stop",
            "latest",
            "--no-commit",
        ],
    );
    assert_eq!(rows(&skipped, "events").len() as u64, ORDERS - 100);
    assert!(per_partition[2] > 100);
}

/// An unbounded run that a failing assertion must not leave behind.
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_partition_without_records_does_not_stall_candles() {
    // One symbol: every record in partition 0 of a 2-partition topic.
    let topic = unique("empty-partition");
    let source = format!("kafka://{}/{topic}", kafka());
    orderflow(&[
        "gen",
        "--to",
        &source,
        "--partitions",
        "2",
        "--orders",
        "3000",
        "--symbols",
        "1",
    ]);
    let out = scratch("kafka-empty-partition");
    let sink = format!("dir:{}", out.display());
    let child = Command::new(common::binary())
        .args(["run", "--quiet", "--source", &source, "--sink", &sink])
        .args([
            "--intervals",
            "1s",
            "--idle-timeout",
            "500ms",
            "--workers",
            "2",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    // The last window (event times T0+2000…T0+2999) closes only once
    // partition 0 idles; partition 1 never has a record.
    let deadline = Instant::now() + Duration::from_secs(30);
    let last_window = |out: &std::path::Path| {
        rows(out, "candles")
            .iter()
            .any(|c| c["window_start"].as_i64() == Some(T0 + 2_000))
    };
    while !last_window(&out) {
        assert!(Instant::now() < deadline, "the last window never closed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended by itself"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    assert_eq!(rows(&out, "events").len(), 3_000);
    let candles = rows(&out, "candles");
    assert_eq!(candles.len(), 3, "three 1s windows, each emitted once");
}

#[test]
fn two_processes_consume_disjoint_partitions_and_give_what_one_gives() {
    let (source, _) = produce("cluster");
    let dir = scratch("kafka-cluster");
    let cluster = common::run_cluster(&dir, &["--source", &source, "--stop", "latest"]);
    let symbols = |output: &str| -> std::collections::BTreeSet<String> {
        rows(&cluster, output)
            .iter()
            .filter_map(|e| e["symbol"].as_str().map(String::from))
            .collect()
    };
    let (zero, one) = (symbols("events"), symbols("events.p1"));
    assert!(!zero.is_empty() && !one.is_empty(), "both processes read");
    assert!(zero.is_disjoint(&one), "no symbol read by both");
    let single = dir.join("single");
    run(&source, &single, &["--stop", "latest"]);
    for output in OUTPUTS {
        let mut both = rows(&cluster, output);
        both.extend(rows(&cluster, &format!("{output}.p1")));
        assert_same_rows(output, &rows(&single, output), &both, "with two processes");
    }
}

#[test]
fn the_kafka_sink_writes_what_the_dir_sink_writes_keyed_by_symbol() {
    let prefix = format!("{}.", unique("out"));
    let out = scratch("kafka-sink");
    let sink = format!("kafka://{}?prefix={prefix}&partitions=3", kafka());
    let mut args = vec!["--sink", &sink, "--intervals", "1s,1m"];
    args.extend(GEN);
    run("gen", &out, &args);
    for output in OUTPUTS {
        let records = consume_all(&kafka(), &format!("{prefix}{output}"));
        let values: Vec<Value> = records
            .iter()
            .map(|(_, _, v)| serde_json::from_str(v).unwrap())
            .collect();
        assert!(
            sorted(&values) == sorted(&rows(&out, output)),
            "{output}: the topic differs from the file"
        );
        for ((_, key, _), value) in records.iter().zip(&values) {
            assert_eq!(
                key.as_deref(),
                value[if output == "exposure" {
                    "account"
                } else {
                    "symbol"
                }]
                .as_str(),
                "{output} keyed by symbol (exposure by account)"
            );
        }
        // One symbol, one partition: its records stay in order.
        let mut partition_of = std::collections::HashMap::new();
        for (partition, key, _) in &records {
            if let Some(key) = key {
                assert_eq!(
                    *partition_of.entry(key.clone()).or_insert(*partition),
                    *partition
                );
            }
        }
    }
}

#[test]
fn sql_over_output_topics_answers_like_sql_over_the_dir() {
    let prefix = format!("{}.", unique("sql"));
    let out = scratch("kafka-sql");
    let sink = format!("kafka://{}?prefix={prefix}&partitions=2", kafka());
    let mut args = vec!["--sink", &sink, "--intervals", "1m"];
    args.extend(GEN);
    run("gen", &out, &args);
    let query = "SELECT symbol, count(*) AS trades, sum(qty) AS volume, \
                 sum(price * qty) AS notional FROM trades GROUP BY symbol ORDER BY symbol";
    let data = out.to_str().unwrap();
    let from_dir = orderflow(&["sql", "--data", data, "--format", "csv", query]);
    let address = format!("kafka://{}?prefix={prefix}", kafka());
    let from_kafka = orderflow(&["sql", "--kafka", &address, "--format", "csv", query]);
    assert!(from_dir.lines().count() > 2, "{from_dir}");
    assert_eq!(from_kafka, from_dir);
    // Candles and events are there too, with their exact decimals.
    let candles = "SELECT count(*) AS n, sum(volume) AS v FROM candles";
    assert_eq!(
        orderflow(&["sql", "--kafka", &address, "--format", "csv", candles]),
        orderflow(&["sql", "--data", data, "--format", "csv", candles])
    );
    // A range by record timestamp: everything was written before now, and
    // nothing after.
    let now = common::now_ms().to_string();
    let count = "SELECT count(*) AS n FROM events";
    let before_now = orderflow(&[
        "sql", "--kafka", &address, "--to", &now, "--format", "csv", count,
    ]);
    assert_eq!(before_now, format!("n\n{ORDERS}\n"));
    let after_now = orderflow(&[
        "sql", "--kafka", &address, "--from", &now, "--format", "csv", count,
    ]);
    assert_eq!(after_now, "n\n0\n");
    // A bad query is an error with its position, not a panic.
    let bad = Command::new(common::binary())
        .args(["sql", "--kafka", &address, "SELEC 1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

/// Produces `orders` generated orders (seed `seed`, 20 symbols) to a new
/// 4-partition topic on `broker`, runs them once uninterrupted into
/// `want`; returns (want, got, the arguments of a checkpointed run of the
/// same into `got`). Both runs are bounded, and idle advances (which follow
/// the wall clock, and so a slow test broker) are kept out.
fn checkpointed_kafka_run(
    broker: &str,
    name: &str,
    orders: u64,
    seed: &str,
) -> (PathBuf, PathBuf, Vec<String>) {
    let source = format!("kafka://{broker}/{}", unique(name));
    let orders = orders.to_string();
    #[rustfmt::skip]
    orderflow(&["gen", "--to", &source, "--partitions", "4", "--orders", &orders, "--symbols", "20", "--seed", seed]);
    let dir = scratch(&format!("kafka-{name}"));
    #[rustfmt::skip]
    let bounded = ["--stop", "latest", "--no-commit", "--intervals", "1s,1m", "--idle-timeout", "1h"];
    let want = dir.join("uninterrupted");
    run(&source, &want, &bounded);
    let got = dir.join("restarted");
    let args = checkpointed_args(&source, &got, &dir.join("checkpoint"), "300ms", &bounded);
    (want, got, args)
}

#[test]
fn a_kafka_run_into_three_sinks_killed_ten_times_ends_as_an_uninterrupted_run() {
    let (want, got, mut args) = checkpointed_kafka_run(&kafka(), "kill", 30_000, "13");
    let (address, db) = (clickhouse(), database("kafka_kill"));
    let prefix = format!("{}.", unique("kill-out"));
    args.extend([
        "--sink".into(),
        format!("clickhouse://{address}/{db}?batch_rows=1000&flush_ms=100"),
        "--sink".into(),
        format!("kafka://{}?prefix={prefix}&partitions=3", kafka()),
    ]);
    let summary = run_with_kills(&args, 10, &want, &got);
    assert!(summary.contains("resumed from checkpoint"), "{summary}");
    assert_same_outputs(&want, &got);
    assert_same(&address, &db, &want, ViewRows::Latest);
    assert_topics_hold(&kafka(), &prefix, &want);
}

#[test]
fn a_broker_restarted_under_a_checkpointed_run_loses_and_doubles_nothing() {
    // A broker of its own, so that stopping it disturbs no other test.
    let area = scratch("kafka-restart-server");
    let broker = common::kafka_on(9192, &area, "start");
    let (want, got, mut args) = checkpointed_kafka_run(&broker, "restart", 60_000, "17");
    let prefix = format!("{}.", unique("restart-out"));
    args.extend([
        "--sink".into(),
        format!("kafka://{broker}?prefix={prefix}&partitions=3"),
    ]);
    let mut child = common::spawn(&args);
    let events = got.join("events.jsonl");
    let started = Instant::now();
    while std::fs::metadata(&events).map_or(0, |m| m.len()) < 100_000 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(started.elapsed() < Duration::from_secs(60), "no events");
        std::thread::sleep(Duration::from_millis(5));
    }
    common::kafka_on(9192, &area, "stop");
    std::thread::sleep(Duration::from_secs(10));
    common::kafka_on(9192, &area, "start");
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        // The broker may fail a produce request it was handling as it
        // went down (tansu answers "unknown error"): the run stops on it
        // without committing, and its supervisor starts it again.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error: Kafka: delivering"), "{stderr}");
        let summary = orderflow(&args);
        assert!(summary.contains("resumed from checkpoint"), "{summary}");
    }
    assert_same_outputs(&want, &got);
    assert_topics_hold(&broker, &prefix, &want);
    common::kafka_on(9192, &area, "stop");
}

#[test]
fn a_replay_backfills_a_new_interval_alone() {
    let topic = unique("backfill");
    let source = format!("kafka://{}/{topic}", kafka());
    let mut args = vec!["gen", "--to", &source, "--partitions", "4"];
    args.extend(GEN);
    orderflow(&args);
    let dir = scratch("kafka-backfill");
    // The run keeps checkpoints of 1s and 1m candles; the backfill derives
    // 15s candles from the topic's start and writes nothing else.
    let checkpoint = dir.join("checkpoint");
    let ran = dir.join("run");
    let args = checkpointed_args(
        &source,
        &ran,
        &checkpoint,
        "100ms",
        &["--stop", "latest", "--no-commit", "--intervals", "1s,1m"],
    );
    orderflow(&args);
    let want = dir.join("want");
    run(
        &source,
        &want,
        &["--stop", "latest", "--no-commit", "--intervals", "15s"],
    );
    let backfill = dir.join("backfill");
    let sink = format!("dir:{}", backfill.display());
    let summary = orderflow(&[
        "replay",
        "--quiet",
        "--source",
        &source,
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--from",
        "earliest",
        "--to",
        "latest",
        "--intervals",
        "15s",
        "--outputs",
        "candles",
        "--sink",
        &sink,
    ]);
    assert!(
        summary.contains("replay: from the topic's start"),
        "{summary}"
    );
    // A replay leaves the windows still open at --to unemitted (the run
    // that reads on closes them); every window closed before is the same.
    let closed = |rows: Vec<Value>| -> Vec<String> {
        let cutoff = T0 + ORDERS as i64 - 3_000;
        sorted(
            &rows
                .into_iter()
                .filter(|c| c["window_end"].as_i64().unwrap() <= cutoff)
                .collect::<Vec<_>>(),
        )
    };
    let candles = rows(&backfill, "candles");
    assert!(candles.iter().all(|c| c["interval"] == "15s"));
    assert_eq!(
        closed(candles.clone()).len(),
        candles.len(),
        "open windows emitted"
    );
    assert!(!candles.is_empty());
    assert!(
        closed(candles) == closed(rows(&want, "candles")),
        "15s candles differ"
    );
    for output in ["events", "trades", "bbo", "late"] {
        assert!(rows(&backfill, output).is_empty(), "{output} written");
    }
    // A range from a checkpoint cannot take other intervals: it says so.
    let refused = Command::new(common::binary())
        .args(["replay", "--quiet", "--source", &source, "--checkpoint"])
        .arg(&checkpoint)
        .args([
            "--from",
            "timestamp:1700000015000",
            "--to",
            "latest",
            "--intervals",
            "15s",
        ])
        .args(["--sink", &sink])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("replay --from earliest"), "{error}");
}

#[test]
fn metrics_show_the_consumer_lag_of_a_partition_stopped_before_its_end() {
    // One symbol, so every record is in partition 0 and partition 1 is
    // empty; event times (and record timestamps) from 5 s ahead, 1 ms apart.
    let topic = unique("lag");
    let source = format!("kafka://{}/{topic}", kafka());
    let t0 = common::now_ms() + 5_000;
    #[rustfmt::skip]
    orderflow(&["gen", "--to", &source, "--partitions", "2", "--orders", "20000", "--symbols", "1",
        "--start-time", &t0.to_string()]);
    // Partition 0 stops halfway; partition 1 stays open until the clock
    // passes the stop time, ~15 s from now, and the run ends then.
    let out = scratch("kafka-lag");
    #[rustfmt::skip]
    let args: Vec<String> = [
        "run", "--quiet", "--source", &source, "--sink", &format!("dir:{}", out.display()),
        "--stop", &format!("timestamp:{}", t0 + 10_000),
        "--kafka-option", "statistics.interval.ms=200",
    ].map(String::from).to_vec();
    let served = common::Served::start(&args);
    let series = |name: &str, p: u32| format!("orderflow_{name}{{partition=\"{p}\"}}");
    let mut seen = None;
    common::wait_for("the lag of partition 0", Duration::from_secs(10), || {
        let m = served.metrics();
        let lag = |p| m.get(&series("kafka_consumer_lag", p)).copied();
        seen = Some(m.clone());
        lag(0) == Some(10_000.0) && lag(1) == Some(0.0)
    });
    let m = seen.unwrap();
    // Partition 0 has ended; partition 1 never had a message.
    assert_eq!(m[&series("partition_idle", 0)], 1.0);
    assert!(
        !m.contains_key(&series("watermark_lag_seconds", 1)),
        "no watermark without a message"
    );
    served.wait();
    assert_eq!(rows(&out, "events").len(), 10_000);
}

/// Runs `run` against `broker` with `options` and returns its stderr,
/// asserting that it failed.
fn failed_start(broker: &str, options: &[&str]) -> String {
    let mut args = vec![
        "run".to_string(),
        "--source".into(),
        format!("kafka://{broker}/any"),
        "--sink".into(),
        format!("dir:{}", scratch("kafka-failed-start").display()),
    ];
    for option in options {
        args.extend(["--kafka-option".into(), option.to_string()]);
    }
    let out = Command::new(common::binary()).args(&args).output().unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_wrong_port_or_protocol_is_named_instead_of_waited_on() {
    let broker = kafka();
    // SASL on the broker's plaintext listener: refused at once.
    let sasl = [
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=PLAIN",
        "sasl.username=user",
        "sasl.password=wrong",
    ];
    let said = failed_start(&broker, &sasl);
    assert!(
        said.contains(&format!("Kafka at {broker} refused the SASL handshake"))
            && said.contains("security.protocol=SASL_PLAINTEXT"),
        "{said}"
    );
    // TLS to a plaintext port, and a port nothing listens on: no answer,
    // said once the start-up wait is over.
    let said = failed_start(&broker, &["security.protocol=SSL"]);
    assert!(
        said.contains(&format!("no Kafka broker answered at {broker} within 10 s"))
            && said.contains("security.protocol=SSL?"),
        "{said}"
    );
    // Port 1 is privileged and unused: nothing another test serves.
    let free = "127.0.0.1:1";
    let said = failed_start(free, &[]);
    assert!(
        said.contains(&format!("no Kafka broker answered at {free}"))
            && said.contains("Connection refused"),
        "{said}"
    );
}
