//! The ClickHouse sink against a real server (`scripts/clickhouse.sh`).

use orderflow_tests as common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clickhouse::{
    assert_same, canonical, clickhouse, clickhouse_on, count, database, execute, expected, select,
    select_in, servers_area, wait_for_rows, ViewRows,
};
use common::{
    assert_same_outputs, checkpointed_args, orderflow, project, rows, run_with_kills, scratch,
    unique, OUTPUTS,
};
use serde_json::Value;

#[test]
fn a_run_writes_what_the_dir_sink_writes_and_a_rerun_adds_no_duplicates() {
    let address = clickhouse();
    let db = database("run");
    let out = scratch("clickhouse-run");
    let sink = format!("clickhouse://{address}/{db}");
    let dir = format!("dir:{}", out.display());
    let args = [
        "run",
        "--quiet",
        "--sink",
        &dir,
        "--sink",
        &sink,
        "--orders",
        "20000",
        "--symbols",
        "20",
        "--seed",
        "5",
        "--intervals",
        "1s,1m",
        "--workers",
        "2",
    ];
    orderflow(&args);
    assert_same(&address, &db, &out, ViewRows::Same);
    // Every input message has its event; the metrics rows account for them.
    assert_eq!(
        count(&address, &format!("SELECT count() FROM {db}.events")),
        20_000
    );
    assert_eq!(
        count(
            &address,
            &format!("SELECT sum(orders) FROM {db}.pipeline_metrics")
        ),
        20_000
    );
    assert_eq!(
        count(
            &address,
            &format!("SELECT uniqExact(worker) FROM {db}.pipeline_metrics")
        ),
        2
    );
    // The same input again: every row is re-sent, and collapses.
    orderflow(&args);
    assert_same(&address, &db, &out, ViewRows::Latest);
    // argMax sees each candle's last version without waiting for merges.
    let candles = expected(&out, "candles").len() as u64;
    let argmax = format!(
        "SELECT count() FROM (SELECT symbol, candle_interval, window_start, \
         argMax(close, version) AS close FROM {db}.candles \
         GROUP BY symbol, candle_interval, window_start)"
    );
    assert_eq!(count(&address, &argmax), candles);
}

#[test]
fn missing_tables_with_no_create_and_a_refused_login_fail_clearly() {
    let address = clickhouse();
    let out = scratch("clickhouse-refused");
    let dir = format!("dir:{}", out.display());
    for (sink, extra, says) in [
        (
            format!("clickhouse://{address}/{}", database("absent")),
            Some("--no-create"),
            "missing",
        ),
        (
            format!("clickhouse://nobody:wrong@{address}/{}", database("login")),
            None,
            "nobody",
        ),
    ] {
        let mut command = Command::new(common::binary());
        command.args([
            "run", "--quiet", "--orders", "100", "--sink", &dir, "--sink", &sink,
        ]);
        command.args(extra);
        let run = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{sink}: {stderr}");
        assert!(stderr.contains(says), "{sink}: {stderr}");
        assert!(
            !stderr.contains("wrong"),
            "the password is never printed: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_tls_sink_writes_what_plain_http_writes_and_refuses_an_untrusted_certificate() {
    let address = clickhouse();
    // The server's self-signed certificate, trusted as OpenSSL allows.
    let cert = servers_area().join("clickhouse/tls/cert.pem");
    let out = scratch("clickhouse-tls");
    let db = database("tls");
    let dir = format!("dir:{}", out.display());
    let sink = format!("clickhouse://127.0.0.1:8443/{db}?secure=true");
    let args = [
        "run", "--quiet", "--orders", "3000", "--sink", &dir, "--sink", &sink,
    ];
    let run = Command::new(common::binary())
        .args(args)
        .env("SSL_CERT_FILE", &cert)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_same(&address, &db, &out, ViewRows::Same);
    // Without it the certificate is refused at once, not retried for minutes.
    let started = Instant::now();
    let untrusted = format!(
        "clickhouse://127.0.0.1:8443/{}?secure=true",
        database("untrusted")
    );
    let run = Command::new(common::binary())
        .args(["run", "--quiet", "--orders", "100", "--sink", &untrusted])
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_server_gone_for_twenty_seconds_delays_the_run_and_loses_nothing() {
    // A server of its own, so that stopping it disturbs no other test.
    let area = scratch("clickhouse-outage-server");
    let address = clickhouse_on(8124, &area, "start");
    let db = database("outage");
    let work = scratch("clickhouse-outage");
    let orders = work.join("orders.jsonl");
    orderflow(&[
        "gen",
        "--out",
        orders.to_str().unwrap(),
        "--orders",
        "200000",
        "--symbols",
        "50",
        "--seed",
        "3",
        "--partitions",
        "1",
    ]);
    let lines: Vec<String> = std::fs::read_to_string(&orders)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let out = work.join("out");
    let mut run = Command::new(common::binary())
        .args(["run", "--quiet", "--source", "file:-", "--intervals", "1m"])
        .args(["--sink", &format!("dir:{}", out.display())])
        .args([
            "--sink",
            &format!(
                "clickhouse://{address}/{db}?batch_rows=2000&flush_ms=100&queue=1&retry_for=120"
            ),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = run.id();
    let stderr = || std::fs::read_to_string(work.join("stderr")).unwrap();
    let mut stdin = run.stdin.take().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    // The first tenth goes in at once, the rest once the server is gone.
    let (outage, outage_began) = std::sync::mpsc::channel::<()>();
    let feeder = {
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            for (i, line) in lines.iter().enumerate() {
                if i == lines.len() / 10 {
                    outage_began.recv().unwrap();
                }
                writeln!(stdin, "{line}").unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Rows are arriving; then the server goes away.
    wait_for_rows(&address, &db);
    clickhouse_on(8124, &area, "stop");
    outage.send(()).unwrap();
    let stopped = Instant::now();
    let mut peak = 0;
    let mut during = Vec::new();
    while stopped.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        peak = peak.max(rss(pid));
        during.push(written.load(Ordering::Relaxed));
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run waits for the server: {}",
            stderr()
        );
    }
    clickhouse_on(8124, &area, "start");
    feeder.join().unwrap();
    let status = run.wait().unwrap();
    assert!(
        status.success(),
        "the run ends well once the server is back: {}",
        stderr()
    );
    // The source was held back: over the last ten seconds of the outage it
    // could not take more input, and memory stayed flat.
    let tail = &during[during.len() / 2..];
    assert!(tail.first() == tail.last(), "input kept flowing: {tail:?}");
    assert!(
        tail.last() < Some(&200_000),
        "all input taken during the outage"
    );
    assert!(
        peak < 300 << 20,
        "resident memory reached {} MiB",
        peak >> 20
    );
    assert_same(&address, &db, &out, ViewRows::Same);
    clickhouse_on(8124, &area, "stop");
}

/// A panel's SQL as the Grafana plugin sends it: `$__timeFilter(col)` as
/// `col >= toDateTime(FROM) AND col <= toDateTime(TO)`, `$__interval_s` as
/// whole seconds, the dashboard's variables by value.
fn expand(sql: &str, from: u64, to: u64, variables: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let end = after.find(')').expect("$__timeFilter( closes");
        let column = after[..end].trim();
        out.push_str(&format!(
            "{column} >= toDateTime({from}) AND {column} <= toDateTime({to})"
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let mut out = out
        .replace("$__interval_s", "60")
        .replace("$__fromTime", &format!("toDateTime({from})"))
        .replace("$__toTime", &format!("toDateTime({to})"));
    for (name, value) in variables {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(
        !out.contains('$'),
        "a macro or variable left unexpanded: {out}"
    );
    out
}

/// The dashboards in `dashboards/`.
const DASHBOARDS: [&str; 3] = ["market", "pipeline", "risk"];

/// Every query of the dashboards in `dashboards/`: panels' and variables'.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = project("dashboards");
    let mut queries = Vec::new();
    for name in DASHBOARDS {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            let query = variable["query"].as_str().unwrap();
            queries.push((format!("{name}: ${}", variable["name"]), query.to_string()));
        }
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let sql = target["rawSql"].as_str().unwrap();
                queries.push((format!("{name}: {}", panel["title"]), sql.to_string()));
            }
        }
    }
    queries
}

#[test]
fn dashboards_import_through_the_ui_and_through_provisioning() {
    let dir = project("dashboards");
    for name in DASHBOARDS {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        // The UI's import asks for the datasource this input names, and
        // puts it where `${DS_CLICKHOUSE}` stands.
        let inputs = dashboard["__inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1, "{name}");
        assert_eq!(inputs[0]["name"], "DS_CLICKHOUSE");
        assert_eq!(inputs[0]["pluginId"], "grafana-clickhouse-datasource");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        let variable = |v: &str| variables.iter().find(|x| x["name"] == v).unwrap();
        // Provisioned, `${DS_CLICKHOUSE}` stays unresolved and the
        // variable falls back to the first ClickHouse datasource.
        assert_eq!(variable("datasource")["type"], "datasource");
        assert_eq!(
            variable("datasource")["current"]["value"],
            "${DS_CLICKHOUSE}"
        );
        assert_eq!(variable("database")["type"], "textbox");
        // Every panel, query and variable goes through the variable, and
        // every table is qualified with the database variable.
        let mut uses = 0;
        let mut check = |at: &Value, what: String| {
            assert_eq!(at["datasource"]["uid"], "${datasource}", "{name}: {what}");
            for key in ["rawSql", "query"] {
                if let Some(sql) = at[key].as_str().filter(|_| at["type"] != "textbox") {
                    for word in ["FROM ", "JOIN "] {
                        for (i, _) in sql.match_indices(word) {
                            let table = &sql[i + word.len()..];
                            assert!(table.starts_with("${database}."), "{name}: {what}: {sql}");
                            uses += 1;
                        }
                    }
                }
            }
        };
        for v in variables.iter().filter(|v| v["type"] == "query") {
            check(v, format!("variable {}", v["name"]));
        }
        for panel in dashboard["panels"].as_array().unwrap() {
            check(panel, format!("panel {}", panel["title"]));
            for target in panel["targets"].as_array().unwrap() {
                check(target, format!("panel {}", panel["title"]));
            }
        }
        let panels = dashboard["panels"].as_array().unwrap().len();
        assert!(uses >= panels, "{name}: {uses} tables for {panels} panels");
    }
}

#[test]
fn every_dashboard_query_returns_rows_on_the_test_server_and_current_clickhouse() {
    let address = clickhouse();
    let db = database("dashboards");
    let out = scratch("clickhouse-dashboards");
    let orders = out.join("orders.jsonl");
    orderflow(&[
        "gen",
        "--out",
        orders.to_str().unwrap(),
        "--orders",
        "20000",
        "--symbols",
        "10",
        "--seed",
        "9",
    ]);
    // Rejects for the reasons panel: a duplicate, an unknown cancel, junk.
    let mut input = std::fs::read_to_string(&orders).unwrap();
    let first = input.lines().next().unwrap().to_string();
    input.push_str(&format!("{first}\nnot json\n"));
    std::fs::write(&orders, input).unwrap();
    let source = format!("file:{}", orders.display());
    orderflow(&[
        "run",
        "--quiet",
        "--source",
        &source,
        "--intervals",
        "1s,1m",
        "--sink",
        &format!("clickhouse://{address}/{db}"),
        "--sink",
        &format!("dir:{}", out.join("dir").display()),
    ]);
    let range = select(
        &address,
        &format!("SELECT toUInt32(min(time)) AS from, toUInt32(max(time)) AS to FROM {db}.trades"),
    );
    let bound = |k: &str| -> u64 { canonical(&range[0][k]).as_str().unwrap().parse().unwrap() };
    let (from, to) = (bound("from") - 60, bound("to") + 60);
    let top = select(
        &address,
        &format!("SELECT symbol FROM {db}.trades GROUP BY symbol ORDER BY count() DESC LIMIT 1"),
    );
    let symbol = top[0]["symbol"].as_str().unwrap().to_string();
    // The queries on the rows in `database`.
    let queries = |database: &str| -> Vec<(String, String)> {
        let variables = [
            ("symbol", symbol.as_str()),
            ("interval", "1m"),
            ("account", "mm-1"),
            ("database", database),
        ];
        let queries: Vec<(String, String)> = dashboard_queries()
            .into_iter()
            .map(|(panel, sql)| (panel, expand(&sql, from, to, &variables)))
            .collect();
        assert!(queries.len() >= 15, "{} queries", queries.len());
        // The pipeline's metrics rows are written in process time: widen
        // the range for those to now.
        let now = common::now_ms() as u64 / 1000;
        queries
            .into_iter()
            .map(|(panel, sql)| match sql.contains("pipeline_metrics") {
                true => {
                    let sql = sql.replace(
                        &format!("toDateTime({to})"),
                        &format!("toDateTime({})", now + 60),
                    );
                    (
                        panel,
                        sql.replace(
                            &format!("toDateTime({from})"),
                            &format!("toDateTime({})", now - 3600),
                        ),
                    )
                }
                false => (panel, sql),
            })
            .collect()
    };
    // ClickHouse 18.16, the test server.
    for (panel, sql) in &queries(&db) {
        let rows = select_in(&address, &db, sql);
        assert!(rows.lines().count() > 0, "{panel}: no rows from\n{sql}");
    }
    // Current ClickHouse (chdb-core), on the same rows.
    let data = out.join("export");
    std::fs::create_dir_all(&data).unwrap();
    for table in OUTPUTS.into_iter().chain(["pipeline_metrics"]) {
        let rows = select_in(
            &address,
            &db,
            &format!("SELECT * FROM {table} FORMAT JSONEachRow"),
        );
        std::fs::write(data.join(format!("{table}.jsonl")), rows).unwrap();
    }
    let root = project("");
    let mut current = Command::new("python3")
        .arg(root.join("tests/current_clickhouse.py"))
        .arg(root.join("schemas/clickhouse"))
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // Its script loads the rows into database `orderflow`.
    let queries = queries("orderflow");
    let sqls: Vec<&str> = queries.iter().map(|(_, sql)| sql.as_str()).collect();
    serde_json::to_writer(current.stdin.take().unwrap(), &sqls).unwrap();
    let result = current.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "current ClickHouse (chdb-core; scripts/test.sh installs it) refused: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let counts: Vec<u64> = serde_json::from_slice(&result.stdout).unwrap();
    for ((panel, sql), n) in queries.iter().zip(counts) {
        assert!(n > 0, "{panel}: no rows on current ClickHouse from\n{sql}");
    }
}

#[test]
fn a_checkpointed_run_killed_ten_times_leaves_one_uninterrupted_runs_tables() {
    let address = clickhouse();
    let db = database("kill");
    let dir = scratch("clickhouse-kill");
    #[rustfmt::skip]
    let gen = ["--orders", "300000", "--symbols", "30", "--seed", "9", "--intervals", "1s,1m"];
    let want = dir.join("uninterrupted");
    common::run("gen", &want, &gen);
    let got = dir.join("restarted");
    let checkpoint = dir.join("checkpoint");
    let mut args = checkpointed_args("gen", &got, &checkpoint, "300ms", &gen);
    args.extend(["--sink".into(), format!("clickhouse://{address}/{db}")]);
    run_with_kills(&args, 10, &want, &got);
    assert_same_outputs(&want, &got);
    assert_same(&address, &db, &want, ViewRows::Latest);
}

#[test]
fn a_replay_restores_a_deleted_range_and_a_second_one_changes_nothing() {
    let address = clickhouse();
    let db = database("replay");
    let topic = unique("replay");
    let source = format!("kafka://{}/{topic}", common::kafka());
    // 60,000 orders 1 ms apart: a minute of event time, record timestamps
    // equal to it.
    #[rustfmt::skip]
    let gen = ["--orders", "60000", "--symbols", "20", "--seed", "17", "--partitions", "4"];
    let mut args = vec!["gen", "--to", &source];
    args.extend(gen);
    orderflow(&args);
    let dir = scratch("clickhouse-replay");
    let want = dir.join("uninterrupted");
    let checkpoint = dir.join("checkpoint");
    let sink = format!("clickhouse://{address}/{db}");
    let bounded = ["--stop", "latest", "--no-commit", "--intervals", "1s,10s"];
    let mut args = checkpointed_args(&source, &want, &checkpoint, "100ms", &bounded);
    args.extend(["--sink".into(), sink.clone()]);
    orderflow(&args);
    assert_same(&address, &db, &want, ViewRows::Latest);

    // Lose 20 seconds from the middle of every table.
    let (from, to) = (1_700_000_020_000i64, 1_700_000_040_000i64);
    for (table, column) in [
        ("events", "ts"),
        ("trades", "ts"),
        ("bbo", "ts"),
        ("late", "ts"),
        ("candles", "window_start"),
    ] {
        execute(
            &address,
            &format!(
                "ALTER TABLE {db}.{table} DELETE WHERE {column} >= {from} AND {column} < {to}"
            ),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &address,
        &format!("SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0"),
    ) > 0
    {
        assert!(Instant::now() < deadline, "mutations did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let lost = count(&address, &format!("SELECT count() FROM {db}.trades FINAL"));
    assert!(
        lost < rows(&want, "trades").len() as u64,
        "the range is gone"
    );

    // Replay it: from the checkpoint before it, to past its end by the
    // longest interval plus lateness and out-of-orderness, so that every
    // candle of the range reaches its last version. The views it leaves
    // alone: a row of theirs from its end could replace a later state.
    let replay = |summary_says: &str| {
        let out = orderflow(&[
            "replay",
            "--quiet",
            "--source",
            &source,
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--from",
            &format!("timestamp:{from}"),
            "--to",
            &format!("timestamp:{}", to + 17_000),
            "--intervals",
            "1s,10s",
            "--sink",
            &sink,
        ]);
        assert!(out.contains(summary_says), "{out}");
        assert!(out.contains("views left out"), "{out}");
    };
    replay("replay: from checkpoint ");
    assert_same(&address, &db, &want, ViewRows::Latest);
    replay("replay: from checkpoint ");
    assert_same(&address, &db, &want, ViewRows::Latest);
}

#[test]
fn a_server_gone_thirty_seconds_and_a_kill_meanwhile_lose_and_double_nothing() {
    // A server of its own, so that stopping it disturbs no other test.
    let area = scratch("clickhouse-outage-checkpointed-server");
    let address = clickhouse_on(8126, &area, "start");
    let db = database("outage_ck");
    let dir = scratch("clickhouse-outage-checkpointed");
    #[rustfmt::skip]
    let gen = ["--orders", "600000", "--symbols", "50", "--seed", "21", "--intervals", "1s,1m"];
    let want = dir.join("uninterrupted");
    common::run("gen", &want, &gen);
    let got = dir.join("restarted");
    let mut args = checkpointed_args("gen", &got, &dir.join("checkpoint"), "200ms", &gen);
    args.extend([
        "--sink".into(),
        format!("clickhouse://{address}/{db}?batch_rows=1000&flush_ms=100&queue=1&retry_for=120"),
    ]);
    let mut served = common::Served::start(&args);
    wait_for_rows(&address, &db);
    // Gone at once (a graceful stop takes long enough for the run to end).
    clickhouse_on(8126, &area, "crash");
    // `/readyz` says the sink is down while it retries.
    let gone = Instant::now();
    let (status, body) = loop {
        let (status, body) = served.get("/readyz");
        if status == 503 || gone.elapsed() > Duration::from_secs(20) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("(clickhouse)"), "{body}");
    // So do the metrics, with the error it retries.
    let (_, metrics) = served.get("/metrics");
    assert!(
        metrics.contains("orderflow_sink_up{sink=\"1\",kind=\"clickhouse\"} 0")
            && metrics.contains("orderflow_sink_error{sink=\"1\",kind=\"clickhouse\",error=\""),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(30).saturating_sub(gone.elapsed()));
    if let Some(status) = served.child.try_wait().unwrap() {
        panic!("the run did not wait for the server ({status})");
    }
    // Killed while the server is away: the restart goes on from the last
    // checkpoint the sink could commit.
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    clickhouse_on(8126, &area, "start");
    let out = common::spawn(&args).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_outputs(&want, &got);
    assert_same(&address, &db, &want, ViewRows::Latest);
    clickhouse_on(8126, &area, "stop");
}
