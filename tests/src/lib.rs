//! Running the real `orderflow` binary and reading what it wrote.

pub mod clickhouse;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const OUTPUTS: [&str; 8] = [
    "events",
    "trades",
    "bbo",
    "candles",
    "late",
    "positions",
    "exposure",
    "depth",
];

/// A fresh directory under the target's temp area.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("orderflow-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `orderflow` with `args`, asserting it exits 0; returns its stdout.
pub fn orderflow<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = Command::new(binary())
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
    // A file still being written may end in part of a line: whole lines only.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
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

/// Events without the fields that depend on how a message was ingested:
/// a malformed message has no `ts` of its own.
pub fn comparable_events(rows: Vec<Value>) -> Vec<Value> {
    rows.into_iter()
        .map(|mut e| {
            if e["symbol"].is_null() {
                e["ts"] = Value::Null;
            }
            e
        })
        .collect()
}

/// The `orderflow` binary of this checkout, built once per test process
/// (an up-to-date build returns at once). A test crate of its own has no
/// `CARGO_BIN_EXE_` for another package's binary, so it asks cargo, as
/// DataFusion's test runners do, for the executable it built. It builds
/// every target of the workspace, as `cargo test --workspace` does: the
/// benches' dev-dependencies (sonic-rs, simd-json) turn on features of
/// serde and others, and a build of the binary alone, without them, would
/// compile every dependency a second time (some twenty minutes on a new
/// machine).
pub fn binary() -> &'static Path {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(project(""))
            .args(["build", "--workspace", "--all-targets"])
            .args(["--message-format", "json-render-diagnostics"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let out = build.stderr(Stdio::inherit()).output().expect("cargo runs");
        assert!(out.status.success(), "building orderflow failed");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|message| message["target"]["name"] == "orderflow")
            .filter(|message| message["target"]["kind"][0] == "bin")
            .filter(|message| message["profile"]["test"] == false)
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the orderflow executable")
    })
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

/// Runs `orderflow run --quiet ARGS` as a cluster of two processes on
/// loopback, writing to `dir:DIR/cluster`; asserts both exit 0 and
/// returns that directory. The ports are ones the kernel says are free
/// now, not derived from the pid: a fixed guess may meet a client's
/// ephemeral port.
pub fn run_cluster(dir: &Path, args: &[&str]) -> PathBuf {
    let listeners: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let hosts: String = listeners
        .iter()
        .map(|l| format!("{}\n", l.local_addr().unwrap()))
        .collect();
    drop(listeners);
    let hostfile = dir.join("hosts");
    std::fs::write(&hostfile, hosts).unwrap();
    let cluster = dir.join("cluster");
    let sink = format!("dir:{}", cluster.display());
    let processes: Vec<_> = ["0", "1"]
        .iter()
        .map(|process| {
            Command::new(binary())
                .args(["run", "--quiet", "--sink", &sink])
                .args(["--processes", "2", "--process", process])
                .arg("--hostfile")
                .arg(&hostfile)
                .args(args)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut process in processes {
        assert!(process.wait().unwrap().success(), "a process failed");
    }
    cluster
}

/// The address of a broker on `port` started by `scripts/kafka.sh`
/// (idempotent), its data under `area`: one a test may stop and start.
pub fn kafka_on(port: u16, area: &Path, action: &str) -> String {
    let port = port.to_string();
    server(
        "kafka.sh",
        action,
        &[
            ("ORDERFLOW_KAFKA_PORT", port.as_ref()),
            ("ORDERFLOW_SERVERS", area.as_os_str()),
        ],
    )
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
/// offsets of the moment with a plain consumer. A partition is done when
/// its position reaches the end, not when a count of records has come: a
/// broker's offsets may have gaps.
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
    let mut ends = HashMap::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
        if high > low {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Offset(low))
                .unwrap();
            ends.insert(p.id(), high);
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    while !ends.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: timed out reading, partitions left to their end: {ends:?}"
        );
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(100)) {
            let message = message.unwrap();
            let Some(&end) = ends.get(&message.partition()) else {
                continue;
            };
            if message.offset() < end {
                records.push((
                    message.partition(),
                    message
                        .key()
                        .map(|k| String::from_utf8(k.to_vec()).unwrap()),
                    String::from_utf8(message.payload().unwrap().to_vec()).unwrap(),
                ));
            }
            if message.offset() + 1 >= end {
                ends.remove(&message.partition());
            }
        }
    }
    records
}

/// Every output topic `PREFIX` + output on `broker` holds what the dir
/// sink wrote in `want`, record for record: none missing, none twice.
pub fn assert_topics_hold(broker: &str, prefix: &str, want: &Path) {
    for output in OUTPUTS {
        let records = consume_all(broker, &format!("{prefix}{output}")).into_iter();
        let topic = records.map(|(_, _, v)| -> Value { serde_json::from_str(&v).unwrap() });
        if view(output).is_some() {
            assert_view_holds(output, stream_rows(want, output), topic);
            continue;
        }
        let topic: Vec<Value> = topic.collect();
        let (topic, file) = (
            sorted(&comparable_events(topic)),
            sorted(&comparable_events(rows(want, output))),
        );
        if topic != file {
            let (in_topic, in_file): (HashSet<_>, HashSet<_>) =
                (topic.iter().collect(), file.iter().collect());
            let missing: Vec<_> = file
                .iter()
                .filter(|r| !in_topic.contains(r))
                .take(3)
                .collect();
            let extra: Vec<_> = topic
                .iter()
                .filter(|r| !in_file.contains(r))
                .take(3)
                .collect();
            panic!(
                "{output}: {} records on the topic, {} uninterrupted; missing {missing:?}; extra or twice {extra:?}",
                topic.len(),
                file.len()
            );
        }
    }
}

/// A small random generator, seeded from the clock and printed, so that a
/// failure can be replayed.
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("dice seed {seed}");
        Dice(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub fn spawn(args: &[String]) -> Child {
    Command::new(binary())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orderflow runs")
}

/// Runs `args` (a checkpointed `orderflow run` into `dir:got`), killing it
/// with SIGKILL `kills` times and starting it again each time, alternating
/// 1 and 2 workers; then lets it finish, and returns its stdout. Most kills
/// land once `got`'s events file passes a random share of `want`'s (the
/// uninterrupted run's), so they spread over the input at any machine
/// speed; every third lands within 40 ms of the start, while the state is
/// being restored.
pub fn run_with_kills(args: &[String], kills: usize, want: &Path, got: &Path) -> String {
    let mut dice = Dice::new();
    let total = std::fs::metadata(want.join("events.jsonl")).unwrap().len();
    let mut thresholds: Vec<u64> = (0..kills)
        .map(|_| total / 20 + dice.below(total * 9 / 10))
        .collect();
    thresholds.sort_unstable();
    let events = got.join("events.jsonl");
    for (attempt, threshold) in thresholds.into_iter().enumerate() {
        let mut args = args.to_vec();
        args.extend(["--workers".into(), (1 + attempt % 2).to_string()]);
        let mut child = spawn(&args);
        let started = Instant::now();
        let early = Duration::from_millis(dice.below(40));
        let due = || match attempt % 3 {
            2 => started.elapsed() >= early,
            _ => std::fs::metadata(&events).map_or(0, |m| m.len()) >= threshold,
        };
        while !due() {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "run {attempt} ended ({status}) before it could be killed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "run {attempt} stalled"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut args = args.to_vec();
    args.extend(["--workers".into(), "2".into()]);
    orderflow(&args)
}

/// A view's key fields and the field that orders its rows (the highest is
/// the truth); `None` for the books' outputs and candles.
pub fn view(output: &str) -> Option<(&'static [&'static str], &'static str)> {
    match output {
        "positions" => Some((&["account", "symbol"], "seq")),
        "exposure" => Some((&["account"], "version")),
        "depth" => Some((&["symbol", "side", "level"], "seq")),
        _ => None,
    }
}

/// A view's latest row per key, read as the rows stream by: a run cut into
/// many batches writes millions of view rows, which must not all be held.
fn latest(output: &str, rows: impl IntoIterator<Item = Value>) -> HashMap<String, Value> {
    let (key, version) = view(output).expect("a view");
    // A number, or its text as ClickHouse writes a UInt64.
    let version_of = |row: &Value| {
        row[version]
            .as_u64()
            .or_else(|| row[version].as_str()?.parse().ok())
    };
    let mut latest: HashMap<String, Value> = HashMap::new();
    for row in rows {
        let at = version_of(&row);
        assert!(at.is_some(), "{output}: a row without {version}: {row}");
        let k: Vec<String> = key.iter().map(|f| row[*f].to_string()).collect();
        let k = k.join("|");
        if latest.get(&k).is_none_or(|l| version_of(l) <= at) {
            latest.insert(k, row);
        }
    }
    latest
}

/// A view after restarts or with other batching: its intermediate rows
/// depend on where the batches were cut, but the same keys have rows and
/// the latest row of every key is the same state (a depth row seeded by a
/// restart carries the symbol's seq at that batch, later than the other
/// run's row of the same level). That each row is exact at its own version
/// is checked against a model with random batching in
/// `operators/tests/views_model.rs`.
pub fn assert_view_holds(
    output: &str,
    want: impl IntoIterator<Item = Value>,
    got: impl IntoIterator<Item = Value>,
) {
    let (_, version) = view(output).expect("a view");
    let without = |mut row: Value| {
        row[version] = Value::Null;
        row
    };
    let settled = |latest: HashMap<String, Value>| -> BTreeMap<String, Value> {
        latest
            .into_iter()
            .map(|(k, row)| (k, without(row)))
            .collect()
    };
    let (want, got) = (settled(latest(output, want)), settled(latest(output, got)));
    assert!(!want.is_empty(), "{output} is empty");
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{output}: the keys differ"
    );
    for (key, row) in &got {
        assert_eq!(row, &want[key], "{output} {key}: the latest rows differ");
    }
}

/// The rows of one output, read one line at a time.
pub fn stream_rows(dir: &Path, output: &str) -> impl Iterator<Item = Value> + use<> {
    let output = output.to_string();
    use std::io::BufRead;
    let file = std::fs::File::open(dir.join(format!("{output}.jsonl"))).ok();
    let lines = file
        .into_iter()
        .flat_map(|f| std::io::BufReader::new(f).lines());
    lines
        .map(|line| line.unwrap())
        .filter(|line| !line.trim().is_empty())
        .map(move |line| {
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{output}: bad JSON {line}: {e}"))
        })
}

/// Two runs of the same input wrote the same `output`: the same rows, or
/// for a view (whose intermediate rows depend on batching) the same latest
/// row per key and rows that each held at their own version.
pub fn assert_same_rows(output: &str, want: &[Value], got: &[Value], what: &str) {
    match view(output) {
        Some(_) => assert_view_holds(output, want.iter().cloned(), got.iter().cloned()),
        None => assert!(sorted(want) == sorted(got), "{output} differs {what}"),
    }
}

/// Every output of `got` holds what `want` holds, row for row (a view: see
/// [`assert_view_holds`]); per-symbol trade, bbo and event seqs are
/// contiguous; the Parquet parts hold the JSONL rows.
pub fn assert_same_outputs(want: &Path, got: &Path) {
    for output in OUTPUTS {
        if view(output).is_some() {
            assert_view_holds(output, stream_rows(want, output), stream_rows(got, output));
            let rows = stream_rows(got, output).count();
            assert_eq!(parquet_rows(got, output), rows, "{output} Parquet parts");
            continue;
        }
        let (mut a, mut b) = (rows(want, output), rows(got, output));
        if output == "events" {
            (a, b) = (comparable_events(a), comparable_events(b));
        }
        assert!(!a.is_empty() || output == "late", "{output} is empty");
        let (a, b) = (sorted(&a), sorted(&b));
        if a != b {
            let (in_a, in_b): (HashSet<_>, HashSet<_>) = (a.iter().collect(), b.iter().collect());
            let extra: Vec<_> = b.iter().filter(|r| !in_a.contains(r)).take(3).collect();
            let missing: Vec<_> = a.iter().filter(|r| !in_b.contains(r)).take(3).collect();
            panic!(
                "{output}: {} rows uninterrupted, {} after restarts; extra {extra:?}; missing {missing:?}",
                a.len(),
                b.len()
            );
        }
        assert_eq!(parquet_rows(got, output), b.len(), "{output} Parquet parts");
    }
    for (output, field) in [("trades", "seq"), ("bbo", "seq"), ("events", "seq")] {
        let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
        for row in rows(got, output).iter().filter(|r| !r["symbol"].is_null()) {
            seqs.entry(row["symbol"].as_str().unwrap().into())
                .or_default()
                .push(row[field].as_u64().unwrap());
        }
        for (symbol, mut seqs) in seqs {
            seqs.sort_unstable();
            let unique = seqs.len();
            seqs.dedup();
            assert_eq!(unique, seqs.len(), "{output} {symbol}: a seq twice");
            if output != "bbo" {
                assert!(
                    seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1),
                    "{output} {symbol}: seqs have gaps"
                );
            }
        }
    }
}

/// Rows in every Parquet file of `output` in `dir` (whole or parts).
pub fn parquet_rows(dir: &Path, output: &str) -> usize {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let prefix = format!("{output}-");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(!name.ends_with(".tmp"), "{name} left behind");
            name == format!("{output}.parquet")
                || name.starts_with(&prefix) && name.ends_with(".parquet")
        })
        .map(|p| {
            let file = std::fs::File::open(&p).unwrap();
            let reader = SerializedFileReader::new(file)
                .unwrap_or_else(|e| panic!("{} unreadable: {e}", p.display()));
            reader.metadata().file_metadata().num_rows() as usize
        })
        .sum()
}

/// `orderflow run` from `source` into `dir:OUT`, checkpointed into
/// `checkpoint` every `interval`, in small batches so that kills land
/// between, during and right after checkpoints.
pub fn checkpointed_args(
    source: &str,
    out: &Path,
    checkpoint: &Path,
    interval: &str,
    extra: &[&str],
) -> Vec<String> {
    let sink = format!("dir:{}", out.display());
    let checkpoint = checkpoint.display().to_string();
    [
        "run",
        "--quiet",
        "--source",
        source,
        "--sink",
        &sink,
        "--checkpoint",
        &checkpoint,
        "--checkpoint-interval",
        interval,
        "--batch",
        "500",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Polls `done` until it holds, failing the test after `within`.
pub fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The samples of a Prometheus text exposition, by name with labels;
/// panics on a line that is neither a comment nor `name{labels} value`.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("`name value`");
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && bare.starts_with("orderflow_"),
            "not a metric name: {line}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(name.to_string(), value);
    }
    samples
}

/// A running `orderflow run … --serve 127.0.0.1:0` and the address it
/// serves at (read from its stderr, which is drained from then on).
pub struct Served {
    pub child: Child,
    pub address: String,
}

impl Served {
    pub fn start(args: &[String]) -> Served {
        use std::io::BufRead;
        let mut args = args.to_vec();
        args.extend(["--serve".into(), "127.0.0.1:0".into()]);
        let mut child = spawn(&args);
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let address = loop {
            line.clear();
            let read = stderr.read_line(&mut line).unwrap();
            assert!(read > 0, "orderflow ended before serving: {args:?}");
            if let Some(address) = line.trim().strip_prefix("serving http://") {
                break address.to_string();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Served { child, address }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// GET `path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(self.url(path))
            .call()
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// The samples `/metrics` answers with now.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200, "{text}");
        samples(&text)
    }

    /// Stops the run as Ctrl-C does and returns its stdout.
    pub fn stop(self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        self.wait()
    }

    /// Waits for the run to end (successfully) and returns its stdout.
    pub fn wait(self) -> String {
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "orderflow failed: {}", out.status);
        String::from_utf8(out.stdout).unwrap()
    }
}
