//! Durable state: a checkpointed run killed with SIGKILL at random moments
//! and restarted with the same command ends with every output exactly as
//! one uninterrupted run wrote it; SIGTERM stops cleanly; a checkpoint of
//! another configuration is refused.

use orderflow_tests as common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_same_outputs, checkpointed_args, orderflow, parquet_rows, rows, run, run_with_kills,
    scratch, spawn, OUTPUTS,
};

#[test]
fn a_file_run_killed_ten_times_ends_as_an_uninterrupted_run() {
    let dir = scratch("kill-file");
    let orders = dir.join("orders.jsonl");
    let orders_arg = orders.to_str().unwrap();
    orderflow(&[
        "gen",
        "--out",
        orders_arg,
        "--orders",
        "400000",
        "--symbols",
        "30",
        "--seed",
        "11",
    ]);
    let source = format!("file:{orders_arg}");
    let want = dir.join("uninterrupted");
    run(&source, &want, &["--intervals", "1s,1m"]);
    let got = dir.join("restarted");
    let checkpoint = dir.join("checkpoint");
    let args = checkpointed_args(
        &source,
        &got,
        &checkpoint,
        "50ms",
        &["--intervals", "1s,1m"],
    );
    let summary = run_with_kills(&args, 10, &want, &got);
    assert!(summary.contains("resumed from checkpoint"), "{summary}");
    assert_same_outputs(&want, &got);
}

#[test]
fn a_generated_run_killed_ten_times_ends_as_an_uninterrupted_run() {
    let dir = scratch("kill-gen");
    let gen = [
        "--orders",
        "400000",
        "--symbols",
        "30",
        "--seed",
        "5",
        "--partitions",
        "5",
    ];
    let want = dir.join("uninterrupted");
    run("gen", &want, &gen);
    let got = dir.join("restarted");
    let checkpoint = dir.join("checkpoint");
    let args = checkpointed_args("gen", &got, &checkpoint, "50ms", &gen);
    let summary = run_with_kills(&args, 10, &want, &got);
    assert!(summary.contains("resumed from checkpoint"), "{summary}");
    assert_same_outputs(&want, &got);
}

#[test]
fn sigterm_checkpoints_and_the_same_command_goes_on_from_there() {
    let dir = scratch("sigterm");
    let out = dir.join("out");
    let checkpoint = dir.join("checkpoint");
    let gen = ["--orders", "0", "--symbols", "10"];
    let args = checkpointed_args("gen", &out, &checkpoint, "50ms", &gen);
    for round in 0..2 {
        let mut child = spawn(&args);
        // Whole lines only: the file is being written.
        let trades = || {
            std::fs::read(out.join("trades.jsonl"))
                .map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
        };
        let enough = trades() + 1000;
        let deadline = Instant::now() + Duration::from_secs(30);
        while trades() < enough {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "round {round}: the run ended ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "round {round}: no trades");
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "exit {:?}", output.status);
        let summary = String::from_utf8(output.stdout).unwrap();
        let expected = [
            "checkpoints: started afresh",
            "checkpoints: resumed from checkpoint",
        ][round];
        assert!(summary.contains(expected), "round {round}: {summary}");
        // Everything written is committed: the Parquet parts hold every row.
        for output in OUTPUTS {
            assert_eq!(
                parquet_rows(&out, output),
                rows(&out, output).len(),
                "{output}"
            );
        }
    }
    // The second run went on where the first stopped: no seq twice, none skipped.
    let mut next: HashMap<String, u64> = HashMap::new();
    for trade in rows(&out, "trades") {
        let seq = trade["seq"].as_u64().unwrap();
        let expected = next
            .entry(trade["symbol"].as_str().unwrap().into())
            .or_insert(1);
        assert_eq!(seq, *expected, "{trade}");
        *expected += 1;
    }
}

#[test]
fn a_checkpoint_of_another_configuration_is_refused_with_what_differs() {
    let dir = scratch("refuse");
    let out = dir.join("out");
    let checkpoint = dir.join("checkpoint");
    let gen = ["--orders", "2000"];
    let mut args = checkpointed_args("gen", &out, &checkpoint, "50ms", &gen);
    orderflow(&args);
    args.extend(["--intervals".into(), "15m".into()]);
    let refused = spawn(&args).wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let error = String::from_utf8(refused.stderr).unwrap();
    assert!(
        error.contains("--intervals was 1s,1m,5m,1h, now 15m"),
        "{error}"
    );
    let stdin: Vec<&str> = vec![
        "run",
        "--source",
        "file:-",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    let out = Command::new(common::binary())
        .args(&stdin)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin cannot"));
}
