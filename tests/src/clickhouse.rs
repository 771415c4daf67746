//! The ClickHouse test servers, and reading back what the sink wrote.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use crate::{assert_view_holds, rows, server, sorted, unique, view};

/// The address of a server on `port` started by `scripts/clickhouse.sh`
/// (idempotent), its data under `area`.
pub fn clickhouse_on(port: u16, area: &Path, action: &str) -> String {
    let http = port.to_string();
    let native = (port + 877).to_string();
    let https = (port + 320).to_string();
    server(
        "clickhouse.sh",
        action,
        &[
            ("ORDERFLOW_CLICKHOUSE_PORT", http.as_ref()),
            ("ORDERFLOW_CLICKHOUSE_NATIVE_PORT", native.as_ref()),
            ("ORDERFLOW_CLICKHOUSE_HTTPS_PORT", https.as_ref()),
            ("ORDERFLOW_SERVERS", area.as_os_str()),
        ],
    )
}

/// Where the shared test servers keep their data (scripts' test area).
pub fn servers_area() -> std::path::PathBuf {
    std::env::var_os("ORDERFLOW_SERVERS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("orderflow-servers"))
}

/// The shared test server: HTTP on 8123, HTTPS on 8443.
pub fn clickhouse() -> String {
    static ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDRESS
        .get_or_init(|| clickhouse_on(8123, &servers_area(), "start"))
        .clone()
}

/// A database name no earlier run used: the server keeps its data.
pub fn database(name: &str) -> String {
    unique(name).replace('-', "_")
}

/// The rows of `query` (run on `address`) as JSON values.
pub fn select(address: &str, query: &str) -> Vec<Value> {
    select_in(address, "default", query)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The rows of `query` in `database`, as JSONEachRow text.
pub fn select_in(address: &str, database: &str, query: &str) -> String {
    let client = clickhouse::Client::default()
        .with_url(format!("http://{address}"))
        .with_database(database)
        .with_validation(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bytes = runtime
        .block_on(async {
            client
                .query(query)
                .fetch_bytes("JSONEachRow")?
                .collect()
                .await
        })
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A value as text, decimals without trailing zeros, so that the dir sink's
/// `"100.5"` and ClickHouse's `100.50000000` (or `"1"` and `1`) compare.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect(),
        ),
        Value::Number(n) => canonical(&Value::String(n.to_string())),
        Value::String(s) if s.contains('.') && s.parse::<f64>().is_ok() => {
            Value::String(s.trim_end_matches('0').trim_end_matches('.').to_string())
        }
        other => other.clone(),
    }
}

pub fn canonical_sorted(rows: &[Value]) -> Vec<String> {
    sorted(&rows.iter().map(canonical).collect::<Vec<_>>())
}

/// Each output as the contract's fields, rows that were re-sent collapsed.
pub fn tables(address: &str, db: &str) -> [(&'static str, Vec<Value>); 8] {
    let trade = "trade_id, symbol, seq, toString(price) AS price, toString(qty) AS qty, \
                 maker_order_id, taker_order_id, toString(taker_side) AS taker_side, ts, \
                 maker_account, taker_account";
    [
        (
            "events",
            select(
                address,
                &format!(
                    "SELECT symbol, order_id, seq, toString(status) AS status, reason, ts, raw \
                     FROM {db}.events FINAL"
                ),
            ),
        ),
        (
            "trades",
            select(address, &format!("SELECT {trade} FROM {db}.trades FINAL")),
        ),
        (
            "bbo",
            select(
                address,
                &format!(
                    "SELECT symbol, seq, toString(bid) AS bid, toString(bid_qty) AS bid_qty, \
                     toString(ask) AS ask, toString(ask_qty) AS ask_qty, ts FROM {db}.bbo FINAL"
                ),
            ),
        ),
        (
            "candles",
            select(
                address,
                &format!(
                    "SELECT symbol, candle_interval AS interval, window_start, window_end, toString(open) AS open, \
                     toString(high) AS high, toString(low) AS low, toString(close) AS close, \
                     toString(volume) AS volume, toString(vwap) AS vwap, trades, version \
                     FROM {db}.candles FINAL"
                ),
            ),
        ),
        (
            "late",
            select(
                address,
                &format!("SELECT {trade}, candle_interval AS interval FROM {db}.late FINAL"),
            ),
        ),
        (
            "positions",
            select(
                address,
                &format!(
                    "SELECT account, symbol, toString(position) AS position, \
                     toString(bought) AS bought, toString(sold) AS sold, \
                     toString(buy_notional) AS buy_notional, \
                     toString(sell_notional) AS sell_notional, trades, \
                     toString(last_price) AS last_price, toString(exposure) AS exposure, seq \
                     FROM {db}.positions FINAL"
                ),
            ),
        ),
        (
            "exposure",
            select(
                address,
                &format!(
                    "SELECT account, toString(gross) AS gross, toString(net) AS net, \
                     toString(long) AS long, toString(short) AS short, symbols, version \
                     FROM {db}.exposure FINAL"
                ),
            ),
        ),
        (
            "depth",
            select(
                address,
                &format!(
                    "SELECT symbol, toString(side) AS side, level, \
                     toString(price) AS price, toString(qty) AS qty, \
                     orders, seq FROM {db}.depth FINAL"
                ),
            ),
        ),
    ]
}

/// How a view's rows in ClickHouse are held against the dir sink's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ViewRows {
    /// Row for row: the dir sink wrote the same run.
    Same,
    /// The same latest row per key: ClickHouse also holds the rows of
    /// restarts or of an earlier run, cut into other intervals.
    Latest,
}

/// What the dir sink wrote, as ClickHouse keeps it: an event without a
/// symbol has symbol '' and seq 0; only the last version of a candle.
pub fn expected(dir: &Path, output: &str) -> Vec<Value> {
    let mut rows = rows(dir, output);
    match output {
        "events" => {
            for e in &mut rows {
                if e["symbol"].is_null() {
                    e["symbol"] = Value::from("");
                    e["seq"] = Value::from(0);
                }
                if e.get("raw").is_none() {
                    e["raw"] = Value::Null;
                }
            }
        }
        "candles" => {
            let mut last = std::collections::BTreeMap::new();
            for c in rows {
                let key = (
                    c["symbol"].to_string(),
                    c["interval"].to_string(),
                    c["window_start"].as_i64(),
                );
                let newer = last
                    .get(&key)
                    .is_none_or(|old: &Value| old["version"].as_u64() < c["version"].as_u64());
                if newer {
                    last.insert(key, c);
                }
            }
            rows = last.into_values().collect();
        }
        _ => {}
    }
    rows
}

/// Every table of `db` holds, row for row, what the dir sink wrote in
/// `dir` (as ClickHouse keeps it); a view as `views` says.
pub fn assert_same(address: &str, db: &str, dir: &Path, views: ViewRows) {
    for (output, got) in tables(address, db) {
        let want = expected(dir, output);
        assert!(
            !want.is_empty() || output == "late",
            "{output}: no rows to compare"
        );
        if views == ViewRows::Latest && view(output).is_some() {
            let canonical = |rows: Vec<Value>| rows.into_iter().map(|r| canonical(&r));
            assert_view_holds(output, canonical(want), canonical(got));
            continue;
        }
        let (got, want) = (canonical_sorted(&got), canonical_sorted(&want));
        if got != want {
            let (in_got, in_want): (HashSet<_>, HashSet<_>) =
                (got.iter().collect(), want.iter().collect());
            let missing = want.iter().filter(|r| !in_got.contains(r)).take(3);
            let extra = got.iter().filter(|r| !in_want.contains(r)).take(3);
            panic!(
                "{output}: {} rows in ClickHouse, {} in the dir sink; missing e.g. {:?}; extra e.g. {:?}",
                got.len(),
                want.len(),
                missing.collect::<Vec<_>>(),
                extra.collect::<Vec<_>>()
            );
        }
    }
}

/// The one number `query` answers.
pub fn count(address: &str, query: &str) -> u64 {
    let rows = select(address, query);
    let value = rows[0].as_object().unwrap().values().next().unwrap();
    match value {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_u64().unwrap(),
    }
}

/// Waits (up to a minute) until the sink has made `db.events` and written
/// rows into it.
pub fn wait_for_rows(address: &str, db: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(
        address,
        &format!("SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'events'"),
    ) == 0
        || count(address, &format!("SELECT count() FROM {db}.events")) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no rows reached ClickHouse"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs a statement that returns nothing, in `database`.
pub fn execute(address: &str, statement: &str) {
    let client = clickhouse::Client::default()
        .with_url(format!("http://{address}"))
        .with_validation(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(client.query(statement).execute())
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}
