//! `orderflow sql`: every query of `sql/` on a fixed generated dataset
//! against its checked-in result, OHLC from trades against the pipeline's
//! own candles, and errors that say what is wrong.

use orderflow_tests as common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{orderflow, rows, run, scratch};

fn sql_dir() -> PathBuf {
    common::project("sql")
}

/// The fixed dataset: generated with a fixed seed, so it never changes.
fn dataset() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let out = scratch("sql-dataset");
        run(
            "gen",
            &out,
            &[
                "--orders",
                "3000",
                "--symbols",
                "4",
                "--hot-share",
                "0.4",
                "--seed",
                "5",
            ],
        );
        out
    })
}

#[test]
fn every_library_query_gives_its_expected_result() {
    let mut files: Vec<_> = std::fs::read_dir(sql_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "sql/ has {} queries", files.len());
    let data = dataset().display().to_string();
    let mut failures = Vec::new();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("-- "),
            "{name}: a header comment says what it answers"
        );
        let got = orderflow(&[
            "sql",
            "--file",
            file.to_str().unwrap(),
            "--data",
            &data,
            "--format",
            "csv",
        ]);
        let expected_path = sql_dir().join("expected").join(format!("{name}.csv"));
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            if std::env::var_os("ORDERFLOW_BLESS").is_some() {
                std::fs::write(&expected_path, &got).unwrap();
            }
            failures.push(format!("{name}: expected\n{expected}\ngot\n{got}"));
        }
        assert!(got.lines().count() > 1, "{name} returned no rows");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A decimal in its shortest form, so `100.10000000` and `100.1` compare equal.
fn decimal(text: &str) -> String {
    match text.split_once('.') {
        Some((whole, frac)) => match frac.trim_end_matches('0') {
            "" => whole.to_string(),
            frac => format!("{whole}.{frac}"),
        },
        None => text.to_string(),
    }
}

#[test]
fn ohlc_from_trades_equals_the_pipelines_candles() {
    let out = scratch("sql-ohlc");
    // With an hour of lateness no trade is late, so every trade is in a candle.
    // The generator writes 1 ms apart: 20,000 orders span 20 one-second windows.
    run(
        "gen",
        &out,
        &[
            "--orders",
            "20000",
            "--symbols",
            "3",
            "--intervals",
            "1s",
            "--lateness",
            "1h",
        ],
    );
    assert!(rows(&out, "late").is_empty());
    let mut finals: HashMap<i64, serde_json::Value> = HashMap::new();
    for candle in rows(&out, "candles")
        .into_iter()
        .filter(|c| c["symbol"] == "SYM0000")
    {
        let start = candle["window_start"].as_i64().unwrap();
        let newer = finals
            .get(&start)
            .is_none_or(|c| c["version"].as_u64() < candle["version"].as_u64());
        if newer {
            finals.insert(start, candle);
        }
    }
    let csv = orderflow(&[
        "sql",
        "--file",
        sql_dir().join("ohlc_resample.sql").to_str().unwrap(),
        "--data",
        out.to_str().unwrap(),
        "--param",
        "symbol=SYM0000",
        "--param",
        "bucket=1 second",
        "--format",
        "json",
    ]);
    let resampled: Vec<serde_json::Value> = csv
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(resampled.len() >= 15, "{} bars", resampled.len());
    assert_eq!(resampled.len(), finals.len(), "one bar per candle window");
    for bar in resampled {
        let start = chrono_free_millis(bar["window_start"].as_str().unwrap());
        let candle = &finals[&start];
        for field in ["open", "high", "low", "close", "volume", "vwap"] {
            assert_eq!(
                decimal(bar[field].as_str().unwrap()),
                decimal(candle[field].as_str().unwrap()),
                "{field} at {start}"
            );
        }
        assert_eq!(bar["trades"], candle["trades"]);
    }
}

/// Milliseconds of an RFC 3339 UTC timestamp as arrow writes it
/// (`2023-11-14T22:13:00Z`, `2023-11-14T22:13:00+00:00`).
fn chrono_free_millis(text: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", text, "+%s%3N"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_bad_query_is_a_clear_error() {
    let data = dataset().display().to_string();
    for (query, says) in [
        ("SELEC 1", "SELEC"),
        ("SELECT nope FROM trades", "nope"),
        ("SELECT * FROM orders", "orders"),
    ] {
        let out = Command::new(common::binary())
            .args(["sql", query, "--data", &data])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{query}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{query}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
        assert_eq!(stderr.matches(says).count(), 1, "said once: {stderr}");
    }
    let missing = Command::new(common::binary())
        .args(["sql", "SELECT 1", "--data", "/nonexistent"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("orderflow run"));
}

#[test]
fn prices_stay_exact_decimals_in_results() {
    let data = dataset().display().to_string();
    let table = orderflow(&[
        "sql",
        "SELECT DISTINCT arrow_typeof(price) AS t FROM trades",
        "--data",
        &data,
    ]);
    assert!(table.contains("Decimal128(38, 8)"), "{table}");
    let json = orderflow(&[
        "sql",
        "SELECT count(*) AS n FROM events",
        "--data",
        &data,
        "--format",
        "json",
    ]);
    assert_eq!(json.trim(), r#"{"n":3000}"#);
}

#[test]
fn vwap_stays_exact_past_the_notional_where_decimal_division_overflows() {
    // Forty crosses of up to 10,000 at about 90,000: a notional of 3.6e10,
    // past the 1.7e10 at which `sum(price * qty) / sum(qty)` overflows.
    let out = scratch("sql-big-notional");
    let orders = out.join("orders.jsonl");
    let (mut notional, mut volume) = (0i128, 0i128);
    let mut lines = String::new();
    for i in 0..40i64 {
        let (price, qty) = match i % 2 {
            0 => ("90000.00000001", "10000"),
            _ => ("90000.00000002", "3333.33333333"),
        };
        let raw = |d: &str| -> i128 {
            let (whole, frac) = d.split_once('.').unwrap_or((d, ""));
            whole.parse::<i128>().unwrap() * 100_000_000
                + format!("{frac:0<8}").parse::<i128>().unwrap()
        };
        notional += raw(price) * raw(qty);
        volume += raw(qty);
        for (side, id) in [("sell", "s"), ("buy", "b")] {
            lines.push_str(&format!(
                r#"{{"type":"new","order_id":"{id}{i}","symbol":"BIG","side":"{side}","price":"{price}","qty":"{qty}","ts":{}}}"#,
                1_700_000_000_000 + i
            ));
            lines.push('\n');
        }
    }
    std::fs::write(&orders, lines).unwrap();
    run(
        &format!("file:{}", orders.display()),
        &out,
        &["--intervals", "1h"],
    );
    // The exact quotient, rounded half away from zero at 8 digits.
    let vwap = (2 * notional / volume + 1) / 2;
    let expected = format!("{}.{:08}", vwap / 100_000_000, vwap % 100_000_000);
    let data = out.display().to_string();
    let csv = orderflow(&[
        "sql",
        "--file",
        sql_dir().join("vwap_by_symbol.sql").to_str().unwrap(),
        "--data",
        &data,
        "--format",
        "json",
    ]);
    let row: serde_json::Value = serde_json::from_str(csv.trim()).unwrap();
    assert_eq!(row["vwap"], expected.as_str(), "{row}");
    assert_eq!(row["trades"], 40);
    let notional_value: f64 = row["notional"].as_str().unwrap().parse().unwrap();
    assert!(notional_value > 1.7e10, "{row}");
    let candle = rows(&out, "candles").pop().unwrap();
    assert_eq!(
        decimal(candle["vwap"].as_str().unwrap()),
        decimal(&expected)
    );
}
