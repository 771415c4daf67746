//! Unbounded runs: an idle input still closes its windows, and Ctrl-C ends a
//! run cleanly with everything flushed.

use orderflow_tests as common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{rows, scratch, wait_for};

#[test]
fn an_idle_stdin_closes_its_windows_after_the_idle_timeout() {
    let out = scratch("idle");
    let sink = format!("dir:{}", out.display());
    let mut child = Command::new(common::binary())
        .args(["run", "--quiet", "--source", "file:-", "--sink", &sink])
        .args([
            "--intervals",
            "1s",
            "--out-of-orderness",
            "0s",
            "--idle-timeout",
            "300ms",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"type":"new","order_id":"s","symbol":"IDLE","side":"sell","price":"5","qty":"2","ts":1700000000100}}"#).unwrap();
    writeln!(stdin, r#"{{"type":"new","order_id":"b","symbol":"IDLE","side":"buy","price":"5","qty":"1","ts":1700000000200}}"#).unwrap();
    stdin.flush().unwrap();
    // No more input, and stdin stays open: only idleness can close the window.
    wait_for("the idle window's candle", Duration::from_secs(20), || {
        !rows(&out, "candles").is_empty()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running while stdin is open"
    );
    let candle = &rows(&out, "candles")[0];
    assert_eq!(
        (candle["window_start"].as_i64(), candle["volume"].as_str()),
        (Some(1_700_000_000_000), Some("1"))
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(rows(&out, "events").len(), 2);
    assert_eq!(
        rows(&out, "candles").len(),
        1,
        "not emitted again at the end"
    );
}

#[test]
fn ctrl_c_stops_an_endless_run_with_everything_flushed() {
    let out = scratch("interrupt");
    let sink = format!("dir:{}", out.display());
    let child = Command::new(common::binary())
        .args([
            "run",
            "--quiet",
            "--source",
            "gen",
            "--orders",
            "0",
            "--workers",
            "2",
            "--sink",
            &sink,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("some trades", Duration::from_secs(20), || {
        !rows(&out, "trades").is_empty()
    });
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    let summary = String::from_utf8(output.stdout).unwrap();
    let events = rows(&out, "events").len();
    assert!(
        summary.contains(&format!("orders {events} ")),
        "summary {summary} counts what was written ({events})"
    );
    assert!(out.join("events.parquet").is_file());
    // Every seq of every symbol up to where it stopped, without gaps.
    let mut last = std::collections::HashMap::new();
    for event in rows(&out, "events")
        .iter()
        .filter(|e| !e["symbol"].is_null())
    {
        let symbol = event["symbol"].as_str().unwrap().to_string();
        let seq = event["seq"].as_u64().unwrap();
        let prev = last.insert(symbol.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "{symbol}: seq {prev} then {seq}");
    }
}
