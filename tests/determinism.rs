//! Same input, same output: for any worker count, any batch size, any
//! pace, and whether the orders come from the generator or from a file of
//! them.

use orderflow_tests as common;

use std::io::Write;

use common::{assert_same_rows, comparable_events, orderflow, rows, run, scratch, sorted, OUTPUTS};

/// Five partitions over twelve symbols: books of one worker interleave
/// partitions whose watermarks move at different times.
#[rustfmt::skip]
const GEN: [&str; 10] = [
    "--orders", "60000", "--symbols", "12", "--hot-share", "0.5", "--seed", "7", "--partitions", "5",
];

#[test]
fn worker_count_and_batch_size_change_nothing() {
    let runs: Vec<_> = [("1", "16384"), ("2", "1000"), ("4", "333")]
        .iter()
        .map(|(workers, batch)| {
            let out = scratch(&format!("determinism-w{workers}"));
            let mut args = GEN.to_vec();
            args.extend(["--workers", workers, "--batch", batch]);
            run("gen", &out, &args);
            out
        })
        .collect();
    let events = rows(&runs[0], "events");
    assert_eq!(events.len(), 60_000, "one event per generated message");
    assert!(
        !rows(&runs[0], "late").is_empty(),
        "the generator makes some trades late"
    );
    assert!(
        rows(&runs[0], "candles")
            .iter()
            .any(|c| c["version"].as_u64() > Some(1)),
        "and some candles re-emitted"
    );
    for output in OUTPUTS {
        let first = rows(&runs[0], output);
        assert!(!first.is_empty(), "{output} is empty");
        for other in &runs[1..] {
            let what = format!("between {} and {}", runs[0].display(), other.display());
            assert_same_rows(output, &first, &rows(other, output), &what);
        }
    }
}

#[test]
fn a_paced_run_gives_what_a_full_speed_one_gives_and_says_its_latency() {
    let full = scratch("determinism-full-speed");
    run("gen", &full, &GEN);
    let paced = scratch("determinism-paced");
    let sink = format!("dir:{}", paced.display());
    let mut args = vec!["run", "--quiet", "--source", "gen", "--sink", &sink];
    args.extend(GEN);
    args.extend(["--workers", "2", "--rate", "100000"]);
    let started = std::time::Instant::now();
    let summary = orderflow(&args);
    let took = started.elapsed();
    // 60,000 orders at 100,000 a second: the last is due after 0.6 s.
    assert!(took.as_secs_f64() >= 0.59, "paced run took {took:?}");
    let latency = summary
        .lines()
        .find(|l| l.starts_with("latency p50 "))
        .unwrap_or_else(|| panic!("no latency in {summary}"));
    assert!(
        latency.contains(" ms · p99 ") && latency.ends_with(" ms"),
        "{latency}"
    );
    for output in OUTPUTS {
        let (full, paced) = (rows(&full, output), rows(&paced, output));
        assert_same_rows(output, &full, &paced, "when paced");
    }
    let kafka = [
        "run",
        "--source",
        "kafka://127.0.0.1:1/orders",
        "--rate",
        "10",
    ];
    let refused = std::process::Command::new(common::binary())
        .args(kafka)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rate paces the gen and file"));
}

#[test]
fn a_file_of_generated_orders_trades_like_the_generator() {
    let dir = scratch("gen-vs-file");
    let orders = dir.join("orders.jsonl");
    let mut args = vec!["gen", "--out", orders.to_str().unwrap()];
    args.extend(GEN);
    orderflow(&args);
    let lines = std::fs::read_to_string(&orders).unwrap().lines().count();
    assert_eq!(lines, 60_000);

    let from_gen = dir.join("from-gen");
    run("gen", &from_gen, &GEN);
    let from_file = dir.join("from-file");
    run(
        &format!("file:{}", orders.display()),
        &from_file,
        &["--workers", "3"],
    );
    for output in ["trades", "bbo"] {
        assert!(
            sorted(&rows(&from_gen, output)) == sorted(&rows(&from_file, output)),
            "{output} differs"
        );
    }
    assert!(
        sorted(&comparable_events(rows(&from_gen, "events")))
            == sorted(&comparable_events(rows(&from_file, "events")))
    );
}

#[test]
fn every_input_line_gets_exactly_one_event() {
    let dir = scratch("garbage");
    let orders = dir.join("orders.jsonl");
    let mut args = vec!["gen", "--out", orders.to_str().unwrap()];
    args.extend(["--orders", "5000", "--seed", "3"]);
    orderflow(&args);
    // Interleave hostile lines: binary, truncated, wrong shapes, huge.
    let clean = std::fs::read(&orders).unwrap();
    let mut mixed = Vec::new();
    let hostile: [&[u8]; 7] = [
        b"\xff\xfe\x00garbage",
        b"{\"type\":\"new\",\"symbol\":",
        b"null",
        b"\"just a string\"",
        b"{\"type\":\"new\",\"order_id\":\"x\",\"symbol\":\"ACME\",\"side\":\"buy\",\"price\":\"1e400\",\"qty\":\"1\"}",
        b"{\"type\":\"new\",\"order_id\":\"y\",\"symbol\":\"ACME\",\"side\":\"buy\",\"price\":\"99999999999999999999\",\"qty\":\"1\"}",
        b"{\"type\":\"cancel\",\"order_id\":\"z\",\"symbol\":\"ACME\",\"ts\":99999999999999999999}",
    ];
    let mut hostile_lines = 0;
    for (i, line) in clean
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        mixed.extend_from_slice(line);
        mixed.push(b'\n');
        if i % 10 == 0 {
            mixed.extend_from_slice(hostile[i / 10 % hostile.len()]);
            mixed.push(b'\n');
            hostile_lines += 1;
        }
    }
    mixed.extend_from_slice(&vec![b'x'; 1 << 20]);
    hostile_lines += 1;
    std::fs::File::create(&orders)
        .unwrap()
        .write_all(&mixed)
        .unwrap();

    let out = dir.join("out");
    run(
        &format!("file:{}", orders.display()),
        &out,
        &["--workers", "2"],
    );
    let events = rows(&out, "events");
    assert_eq!(events.len(), 5_000 + hostile_lines);
    let malformed = events.iter().filter(|e| e["symbol"].is_null()).count();
    assert!(
        malformed >= hostile_lines / 2,
        "hostile lines without a symbol are rejected as malformed"
    );
}

#[test]
fn parquet_copies_hold_the_same_rows_with_exact_decimals() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let out = scratch("parquet");
    run("gen", &out, &["--orders", "5000", "--workers", "2"]);
    for output in OUTPUTS {
        let file = std::fs::File::open(out.join(format!("{output}.parquet"))).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let n = reader.metadata().file_metadata().num_rows() as usize;
        assert_eq!(n, rows(&out, output).len(), "{output}.parquet row count");
    }
    let file = std::fs::File::open(out.join("trades.parquet")).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let price = schema
        .columns()
        .iter()
        .find(|c| c.name() == "price")
        .unwrap();
    assert_eq!((price.type_precision(), price.type_scale()), (38, 8));
}

#[test]
fn two_processes_give_what_one_gives() {
    let dir = scratch("cluster");
    let cluster = common::run_cluster(&dir, &GEN);
    let single = dir.join("single");
    run("gen", &single, &GEN);
    for output in OUTPUTS {
        let mut both = rows(&cluster, output);
        both.extend(rows(&cluster, &format!("{output}.p1")));
        assert!(
            !rows(&cluster, &format!("{output}.p1")).is_empty() || output == "late",
            "process 1 wrote no {output}"
        );
        assert_same_rows(output, &rows(&single, output), &both, "with two processes");
    }
}
