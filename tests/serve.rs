//! `run --serve` against the running binary: Prometheus text that rises,
//! streams that carry exactly what the `dir:` sink wrote, a client that
//! never reads told what it missed while the others keep up, and the chart
//! page drawn by a real (headless) browser.

use orderflow_tests as common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{rows, samples, scratch, wait_for, Served};
use serde_json::Value;

fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--quiet", "--sink"]
        .into_iter()
        .map(String::from)
        .collect();
    args.push(format!("dir:{}", out.display()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn metrics_are_prometheus_text_and_rise_health_and_readiness_answer() {
    let out = scratch("serve-metrics");
    let served = Served::start(&args(
        &out,
        &["--orders", "0", "--rate", "5000", "--workers", "2"],
    ));
    assert_eq!(served.get("/healthz"), (200, "ok\n".into()));
    wait_for("ready", Duration::from_secs(30), || {
        served.get("/readyz").0 == 200
    });
    let orders = |text: &str| samples(text)["orderflow_orders_total"];
    let (status, first) = served.get("/metrics");
    assert_eq!(status, 200);
    assert!(first.trim_end().ends_with("# EOF"), "{first}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, second) = served.get("/metrics");
    assert!(orders(&second) > orders(&first), "{first}\n{second}");
    let now = samples(&second);
    for name in [
        "orderflow_trades_total",
        "orderflow_candles_total",
        "orderflow_rejects_total{reason=\"unknown\"}",
        "orderflow_sink_rows_total{sink=\"0\",kind=\"dir\"}",
        "orderflow_watermark_lag_seconds{partition=\"1\"}",
        "orderflow_partition_idle{partition=\"1\"}",
    ] {
        assert!(now.contains_key(name), "{name} missing:\n{second}");
    }
    assert_eq!(now["orderflow_sink_up{sink=\"0\",kind=\"dir\"}"], 1.0);
    // The latency histogram: cumulative buckets ending at the count.
    let count = now["orderflow_latency_seconds_count"];
    assert!(count > 0.0);
    assert_eq!(now["orderflow_latency_seconds_bucket{le=\"+Inf\"}"], count);
    let (status, body) = served.get("/v1/candles?symbol=SYM0000&interval=7m");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not one of this run's"), "{body}");
    let (status, body) = served.get("/v1/stream?outputs=nope");
    assert_eq!(
        (status, body.trim()),
        (
            400,
            "`nope` is not an output: events, trades, bbo, candles, late, positions, exposure, depth"
        )
    );
    let summary = served.stop();
    assert!(summary.starts_with("orders "), "{summary}");
}

/// Server-Sent Events as (event, data) pairs until the stream closes.
fn server_sent(url: &str) -> Vec<(String, Value)> {
    let response = ureq::get(url).call().expect("the stream opens");
    let mut events = Vec::new();
    let mut event = String::new();
    for line in BufReader::new(response.into_body().into_reader()).lines() {
        let Ok(line) = line else { break };
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((event.clone(), serde_json::from_str(data).unwrap()));
        }
    }
    events
}

/// Asserts that `got` (records of one output of `symbol`, in stream order)
/// is the tail of what the dir sink wrote for them, and most of it.
fn assert_tail(dir: &Path, output: &str, symbol: &str, got: &[Value]) {
    let wrote: Vec<Value> = rows(dir, output)
        .into_iter()
        .filter(|r| r["symbol"] == symbol)
        .collect();
    assert!(!got.is_empty(), "no {output} of {symbol} streamed");
    assert!(
        got.len() * 10 >= wrote.len() * 8,
        "{output}: {} of {} streamed",
        got.len(),
        wrote.len()
    );
    assert_eq!(
        got,
        &wrote[wrote.len() - got.len()..],
        "{output} of {symbol}"
    );
}

#[test]
fn stream_clients_get_what_the_dir_sink_wrote_and_a_client_that_never_reads_is_told_what_it_missed()
{
    let out = scratch("serve-stream");
    let rate = 25_000;
    #[rustfmt::skip]
    let served = Served::start(&args(&out, &[
        "--orders", "0", "--rate", &rate.to_string(), "--symbols", "5", "--workers", "2",
        // The streams are under test here, not the views (whose positions
        // rows a paced run's small batches multiply: see the README).
        "--no-views",
    ]));
    // A client that asks for everything and never reads a byte.
    let mut stalled = TcpStream::connect(&served.address).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"GET /v1/stream?outputs=events,trades,bbo,candles,late HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let sse = served.url("/v1/stream?outputs=trades,bbo,candles&symbols=SYM0001");
    let follower = std::thread::spawn(move || server_sent(&sse));
    let ws = format!(
        "ws://{}/v1/stream?outputs=trades&symbols=SYM0002",
        served.address
    );
    let socket = std::thread::spawn(move || {
        let (mut socket, _) = tungstenite::connect(ws).expect("the WebSocket opens");
        let mut trades = Vec::new();
        while let Ok(message) = socket.read() {
            if let tungstenite::Message::Text(text) = message {
                let message: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(message["output"], "trades", "{message}");
                trades.push(message["data"].clone());
            }
        }
        trades
    });
    // Stalled for a few seconds (far more than its socket holds), then it
    // reads: a `missed` event counts what its ring dropped meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    stalled
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut text = Vec::new();
    let mut chunk = vec![0; 1 << 20];
    let reading = Instant::now();
    while reading.elapsed() < Duration::from_secs(3) {
        if let Ok(n) = stalled.read(&mut chunk) {
            text.extend_from_slice(&chunk[..n]);
        }
    }
    let text = String::from_utf8_lossy(&text);
    let missed: u64 = text
        .split("event: missed\ndata: ")
        .skip(1)
        .map(|rest| {
            let data: Value = serde_json::from_str(rest.lines().next().unwrap()).unwrap();
            data["missed"].as_u64().unwrap()
        })
        .sum();
    assert!(missed > 0, "the stalled client was not told of misses");

    let summary = served.stop();
    // The pipeline kept its pace with the stalled client attached.
    let reached: f64 = summary
        .lines()
        .next()
        .and_then(|l| l.rsplit(" · ").next())
        .and_then(|r| {
            r.trim_end_matches(" orders/s")
                .trim_end_matches('k')
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no rate in {summary}"));
    assert!(reached * 1e3 >= 0.9 * rate as f64, "{summary}");

    let streamed = follower.join().unwrap();
    assert!(
        streamed.iter().all(|(event, _)| event != "missed"),
        "a reading client missed records"
    );
    for output in ["trades", "bbo", "candles"] {
        let got: Vec<Value> = streamed
            .iter()
            .filter(|(event, _)| event == output)
            .map(|(_, data)| data.clone())
            .collect();
        assert_tail(&out, output, "SYM0001", &got);
    }
    assert_tail(&out, "trades", "SYM0002", &socket.join().unwrap());
}

#[test]
fn the_chart_page_draws_candles_in_a_headless_browser() {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("chromium is not installed (scripts/test.sh installs it)");
    };
    let out = scratch("serve-page");
    #[rustfmt::skip]
    let served = Served::start(&args(&out, &[
        "--orders", "0", "--rate", "2000", "--start-time", "now", "--symbols", "3",
    ]));
    // Candles of 1 s close once the watermark (2 s behind) passes them.
    wait_for("a candle", Duration::from_secs(30), || {
        served.get("/v1/candles?symbol=SYM0000&interval=1s").1.len() > 2
    });
    let browser = |extra: &[&str], query: &str| {
        let profile = out.join("profile");
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,720".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(served.url(&format!("/?symbol=SYM0000&interval=1s{query}")));
        let output = std::process::Command::new(chromium)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The DOM once the page has drawn what the server holds (virtual time
    // runs until the page is idle, which a followed stream never is).
    let dom = browser(&["--dump-dom", "--virtual-time-budget=5000"], "&follow=0");
    let candles: usize = dom
        .split("data-candles=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data-candles in the page: {dom}"));
    assert!(candles > 0, "the chart holds no candles");
    assert!(dom.contains("<canvas"), "the chart drew no canvas");
    let screenshot = out.join("chart.png");
    // The live page, following the stream, for a person to look at.
    let shot = format!("--screenshot={}", screenshot.display());
    browser(&[&shot, "--timeout=3000"], "");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
    eprintln!("screenshot: {}", screenshot.display());
    served.stop();
}
