//! `clickhouse://[USER[:PASSWORD]@]HOST:PORT/DATABASE[?secure=true&batch_rows=N&flush_ms=M&queue=Q&retry_for=S]`:
//! every output to its table (DDL in `schemas/clickhouse/`), plus a row of
//! `pipeline_metrics` per worker every few seconds.
//!
//! Each worker encodes its records as RowBinary rows as they come (laid out
//! by [`rows`] from the outputs' description and the tables' DDL), batches
//! them by rows and time and hands full batches to its own writer thread
//! through a queue of `Q` batches: when ClickHouse
//! is slow or gone the queue fills, the worker waits, and so does the
//! source; memory stays at `Q + 2` batches per worker. A batch is inserted
//! table by table as RowBinary, retried with exponential backoff while the
//! errors are transient (network, overload) for up to `retry_for` seconds;
//! a permanent error (credentials, missing database) fails the run. Retried
//! or replayed rows collapse: every table is a ReplacingMergeTree keyed by
//! the row's identity, so queries with FINAL (or argMax) see each row once.
//!
//! The DDL and queries keep to what ClickHouse 18.16 understands, and so
//! run on current servers as well.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clickhouse::{Client, Row};
use operators::dataflow::Record;
use operators::output::{Status, OUTPUTS};
use serde::Serialize;

mod rows;

use super::queue::{Items, Queue, Writers};
use super::{Commits, Health, Sink, SinkHandle, SinkState, WorkerInfo};
use rows::Layout;

/// The tables' DDL, in creation order; each is `CREATE TABLE IF NOT EXISTS`.
pub const DDL: [(&str, &str); 9] = [
    (
        "events",
        include_str!("../../../schemas/clickhouse/events.sql"),
    ),
    (
        "trades",
        include_str!("../../../schemas/clickhouse/trades.sql"),
    ),
    ("bbo", include_str!("../../../schemas/clickhouse/bbo.sql")),
    (
        "candles",
        include_str!("../../../schemas/clickhouse/candles.sql"),
    ),
    ("late", include_str!("../../../schemas/clickhouse/late.sql")),
    (
        "positions",
        include_str!("../../../schemas/clickhouse/positions.sql"),
    ),
    (
        "exposure",
        include_str!("../../../schemas/clickhouse/exposure.sql"),
    ),
    (
        "depth",
        include_str!("../../../schemas/clickhouse/depth.sql"),
    ),
    (
        "pipeline_metrics",
        include_str!("../../../schemas/clickhouse/pipeline_metrics.sql"),
    ),
];

/// How often each worker writes its `pipeline_metrics` row.
const METRICS_EVERY: Duration = Duration::from_secs(5);
/// How long start-up waits for an unreachable server: a wrong address or
/// a server that is not running should fail the run at once, not after
/// `retry_for` (which is for a server lost mid-run).
const STARTUP_RETRY: Duration = Duration::from_secs(5);
/// The longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where and how to write, from the sink's URL.
#[derive(Clone, Debug)]
pub struct ClickHouseAddress {
    /// `http://HOST:PORT` or, with `secure=true`, `https://`; without
    /// credentials (safe to print).
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Rows a worker gathers before handing a batch to its writer.
    pub batch_rows: usize,
    /// The longest a row waits in a worker's batch.
    pub flush: Duration,
    /// Batches a worker may have queued for its writer.
    pub queue: usize,
    /// How long transient failures are retried before the run fails.
    pub retry_for: Duration,
}

impl ClickHouseAddress {
    /// Parses the sink URL; user and password come from it or else from
    /// `CLICKHOUSE_USER` and `CLICKHOUSE_PASSWORD`.
    pub fn parse(spec: &str) -> anyhow::Result<ClickHouseAddress> {
        let url = url::Url::parse(spec).with_context(|| format!("`{spec}`: not a URL"))?;
        let usage = "clickhouse://[USER[:PASSWORD]@]HOST:PORT/DATABASE";
        if url.scheme() != "clickhouse" {
            bail!("`{}` is not a {usage} address", url.scheme());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow!("{usage}: no host"))?;
        let database = url.path().trim_start_matches('/');
        if database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!(
                "{usage}: the database must be a name of letters, digits and `_`, not `{database}`"
            );
        }
        let decode = |text: &str| {
            url::form_urlencoded::parse(format!("x={text}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = match url.username() {
            "" => std::env::var("CLICKHOUSE_USER").ok(),
            name => Some(decode(name)),
        };
        let password = match url.password() {
            Some(p) => Some(decode(p)),
            None => std::env::var("CLICKHOUSE_PASSWORD").ok(),
        };
        let mut secure = false;
        let mut address = ClickHouseAddress {
            url: String::new(),
            database: database.to_string(),
            user,
            password,
            batch_rows: 50_000,
            flush: Duration::from_secs(1),
            queue: 2,
            retry_for: Duration::from_secs(300),
        };
        for (key, value) in url.query_pairs() {
            let number = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{key}={value}: expected a whole number ≥ 1"))
            };
            match key.as_ref() {
                // TLS, as ClickHouse Cloud and most managed servers require;
                // certificates are checked against the system's roots
                // (or SSL_CERT_FILE).
                "secure" => {
                    secure = match value.as_ref() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("secure={value}: expected true or false"),
                    }
                }
                "batch_rows" => address.batch_rows = number()? as usize,
                "flush_ms" => address.flush = Duration::from_millis(number()?),
                "queue" => address.queue = number()? as usize,
                "retry_for" => address.retry_for = Duration::from_secs(number()?),
                other => bail!(
                    "ClickHouse sink: unknown setting `{other}` (secure, batch_rows, flush_ms, queue, retry_for)"
                ),
            }
        }
        if let Some(port @ (9000 | 9440)) = url.port() {
            bail!(
                "port {port} is ClickHouse's native protocol; this sink speaks HTTP: use port 8123 (or 8443 with secure=true)"
            );
        }
        // ClickHouse's default HTTP and HTTPS ports.
        address.url = match secure {
            false => format!("http://{host}:{}", url.port().unwrap_or(8123)),
            true => format!("https://{host}:{}", url.port().unwrap_or(8443)),
        };
        Ok(address)
    }

    /// A client of the server, in `database` when given.
    pub fn client(&self, database: Option<&str>) -> Client {
        let mut client = Client::default()
            .with_url(&self.url)
            // 18.16 has neither RowBinaryWithNamesAndTypes nor the schema
            // queries validation needs; the row types mirror the DDL instead.
            .with_validation(false);
        if let Some(user) = &self.user {
            client = client.with_user(user);
        }
        if let Some(password) = &self.password {
            client = client.with_password(password);
        }
        match database {
            Some(database) => client.with_database(database),
            None => client,
        }
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.url, self.database)
    }
}

/// Whether an error may pass by itself: the server unreachable, overloaded
/// or restarting, as opposed to a request it will refuse every time.
fn transient(error: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error;
    match error {
        // A certificate the client does not trust stays untrusted.
        Error::Network(e) => {
            !std::iter::successors(Some(e.as_ref() as &dyn std::error::Error), |e| e.source())
                .any(|e| e.to_string().contains("certificate"))
        }
        Error::TimedOut => true,
        Error::BadResponse(text) => {
            // ClickHouse's error codes: timeouts, too many queries or parts,
            // memory limits, socket trouble, replicas read-only for a while.
            const PASSING: [u32; 12] = [159, 160, 164, 202, 203, 209, 210, 241, 242, 252, 319, 425];
            // Without a code the reply came from something in between
            // (a proxy restarting): worth another try.
            code(text).is_none_or(|code| PASSING.contains(&code))
        }
        _ => false,
    }
}

/// Whether an insert's error may pass by itself: as [`transient`], and
/// also a table or database the sink made or found at start now missing
/// (60, 81). A server shutting down detaches its tables while it still
/// answers, and one starting answers before it has loaded them; a table
/// really dropped fails the run after `retry_for`.
fn transient_while_inserting(error: &clickhouse::error::Error) -> bool {
    transient(error)
        || matches!(error, clickhouse::error::Error::BadResponse(text)
            if matches!(code(text), Some(60 | 81)))
}

/// The error code in a ClickHouse error reply (`Code: 60, …` or `Code: 60. …`).
fn code(text: &str) -> Option<u32> {
    text.split("Code: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
}

/// Runs `attempt` until it succeeds, retrying the errors that `passing`
/// calls transient with exponential backoff for up to `retry_for`.
fn retry<T>(
    what: &str,
    health: &Health,
    retry_for: Duration,
    passing: fn(&clickhouse::error::Error) -> bool,
    mut attempt: impl FnMut() -> Result<T, clickhouse::error::Error>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            // The error stays the source, so its causes (a refused
            // connection, a TLS handshake) are told, not only its summary.
            Err(e) if passing(&e) && started.elapsed() < retry_for => {
                let e = anyhow::Error::new(e);
                tracing::warn!("ClickHouse: {what}: {e:#}; retrying in {backoff:?}");
                health.retrying(&e);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) if passing(&e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "ClickHouse: {what}: still failing after {} s",
                    retry_for.as_secs()
                )))
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("ClickHouse: {what}"))),
        }
    }
}

/// A runtime for the client's futures on the calling thread.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the ClickHouse client's runtime")
}

/// Creates the database and tables when missing (`create`), or checks that
/// they are there.
pub fn prepare(address: &ClickHouseAddress, create: bool, health: &Health) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let database = &address.database;
    let server = address.client(None);
    let retry_for = address.retry_for;
    retry(
        "connecting",
        health,
        address.retry_for.min(STARTUP_RETRY),
        transient,
        || runtime.block_on(server.query("SELECT 1").execute()),
    )
    .with_context(|| {
        format!(
            "ClickHouse {}: is the server running, and is this its HTTP port (8123, or 8443 with TLS)?",
            address.describe()
        )
    })?;
    if create {
        let sql = format!("CREATE DATABASE IF NOT EXISTS `{database}`");
        retry(
            "creating the database",
            health,
            retry_for,
            transient,
            || runtime.block_on(server.query(&sql).execute()),
        )?;
        let client = address.client(Some(database));
        for (table, ddl) in DDL {
            retry(
                &format!("creating table {table}"),
                health,
                retry_for,
                transient,
                || runtime.block_on(client.query(ddl).execute()),
            )?;
        }
        return Ok(());
    }
    let tables: Vec<String> = retry("listing the tables", health, retry_for, transient, || {
        runtime.block_on(
            server
                .query("SELECT name FROM system.tables WHERE database = ?")
                .bind(database.as_str())
                .fetch_all::<String>(),
        )
    })?;
    let missing: Vec<&str> = DDL
        .iter()
        .map(|(table, _)| *table)
        .filter(|table| !tables.iter().any(|t| t == table))
        .collect();
    if !missing.is_empty() {
        bail!(
            "ClickHouse {}: missing {} (run without --no-create to create them)",
            address.describe(),
            match tables.is_empty() {
                true => format!("database {database} or its tables"),
                false => format!("tables {}", missing.join(", ")),
            }
        );
    }
    Ok(())
}

pub struct ClickHouseSink {
    address: ClickHouseAddress,
    layouts: Arc<Vec<Layout>>,
    process: usize,
    writers: Arc<Writers>,
    commits: Option<Arc<Commits>>,
}

impl ClickHouseSink {
    /// Prepares the database (see [`prepare`]); writers start per worker.
    pub fn create(
        address: &ClickHouseAddress,
        process: usize,
        create: bool,
        commits: Option<Arc<Commits>>,
    ) -> anyhow::Result<ClickHouseSink> {
        let writers = Writers::new("ClickHouse");
        prepare(address, create, &writers.health)?;
        let ddl = |table: &str| DDL.iter().find(|(t, _)| *t == table).map(|(_, d)| *d);
        Ok(ClickHouseSink {
            address: address.clone(),
            layouts: Arc::new(rows::layouts(ddl)?),
            process,
            writers,
            commits,
        })
    }
}

impl Sink for ClickHouseSink {
    fn handle(&self, worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>> {
        let writer = Writer {
            client: self.address.client(Some(&self.address.database)),
            retry_for: self.address.retry_for,
            worker: worker.index,
            commits: self.commits.clone(),
            layouts: Arc::clone(&self.layouts),
        };
        let queue = self.writers.start(
            format!("clickhouse-{}", worker.index),
            self.address.queue,
            move |batches| writer.run(batches),
        )?;
        Ok(Box::new(ClickHouseHandle {
            batch: Batch::default(),
            layouts: Arc::clone(&self.layouts),
            since: Instant::now(),
            queue: Some(queue),
            writers: Arc::clone(&self.writers),
            batch_rows: self.address.batch_rows,
            flush: self.address.flush,
            metrics: Metrics {
                process: self.process as u32,
                worker: worker.index as u32,
                watermark: Rc::clone(&worker.watermark),
                since: Instant::now(),
                counts: Counts::default(),
            },
        }))
    }

    fn close(&self) -> anyhow::Result<()> {
        self.writers.join()
    }

    fn health(&self) -> &Health {
        &self.writers.health
    }
}

/// One worker's records on their way to the tables, already encoded.
#[derive(Default)]
struct Batch {
    /// Per output (in `OUTPUTS` order), its rows as RowBinary and how many.
    tables: [(Vec<u8>, usize); OUTPUTS.len()],
    metrics: Vec<MetricsRow>,
    /// The checkpoint that ends with this batch, if one does.
    barrier: Option<u64>,
}

impl Batch {
    fn len(&self) -> usize {
        self.tables.iter().map(|(_, rows)| rows).sum::<usize>() + self.metrics.len()
    }
}

/// Counts over one metrics period.
#[derive(Default)]
struct Counts {
    orders: u64,
    trades: u64,
    late: u64,
    rejects: u64,
}

/// A worker's `pipeline_metrics` rows in the making.
struct Metrics {
    process: u32,
    worker: u32,
    watermark: Rc<Cell<Option<i64>>>,
    since: Instant,
    counts: Counts,
}

impl Metrics {
    fn count(&mut self, record: &Record) {
        match record {
            // One event per input message: the orders consumed.
            Record::Event(e) => {
                self.counts.orders += 1;
                self.counts.rejects += u64::from(e.status == Status::Rejected);
            }
            Record::Trade(_) => self.counts.trades += 1,
            Record::Late(_) => self.counts.late += 1,
            _ => {}
        }
    }

    /// The period's row, starting the next period.
    fn row(&mut self, queue_depth: usize) -> MetricsRow {
        let now = crate::source::now_ms();
        let counts = std::mem::take(&mut self.counts);
        let period = std::mem::replace(&mut self.since, Instant::now()).elapsed();
        let watermark = self.watermark.get();
        MetricsRow {
            ts: now,
            process: self.process,
            worker: self.worker,
            period_ms: period.as_millis().min(u32::MAX as u128) as u32,
            orders: counts.orders,
            trades: counts.trades,
            late: counts.late,
            rejects: counts.rejects,
            watermark,
            watermark_lag_ms: watermark.map(|w| now.saturating_sub(w).max(0)),
            queue_depth: queue_depth as u32,
        }
    }
}

struct ClickHouseHandle {
    batch: Batch,
    layouts: Arc<Vec<Layout>>,
    /// When the batch got its first row.
    since: Instant,
    /// `None` once closed.
    queue: Option<Queue<Batch>>,
    writers: Arc<Writers>,
    batch_rows: usize,
    flush: Duration,
    metrics: Metrics,
}

impl ClickHouseHandle {
    /// Hands the batch to the writer, waiting while its queue is full.
    fn send(&mut self) -> anyhow::Result<()> {
        self.writers.check()?;
        let Some(queue) = &self.queue else {
            bail!("ClickHouse sink closed")
        };
        queue.send(std::mem::take(&mut self.batch))
    }

    /// Batches waiting for the writer.
    fn depth(&self) -> usize {
        self.queue.as_ref().map_or(0, Queue::depth)
    }
}

impl SinkHandle for ClickHouseHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        if self.batch.len() == 0 {
            self.since = Instant::now();
        }
        self.metrics.count(record);
        let output = record.output();
        let (rows, count) = &mut self.batch.tables[output];
        self.layouts[output].encode(record, rows);
        *count += 1;
        if self.batch.len() >= self.batch_rows {
            self.send()?;
        }
        Ok(())
    }

    /// Sends the batch once it is old enough, so rows reach ClickHouse
    /// within the flush period without one small insert per step.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.metrics.since.elapsed() >= METRICS_EVERY {
            let row = self.metrics.row(self.depth());
            if self.batch.len() == 0 {
                self.since = Instant::now();
            }
            self.batch.metrics.push(row);
        }
        if self.batch.len() > 0 && self.since.elapsed() >= self.flush {
            self.send()?;
        }
        self.writers.check()
    }

    /// The batch goes now, marked: its writer reports the checkpoint once
    /// the batch (and so every one before it) is in.
    fn barrier(&mut self, id: u64) -> anyhow::Result<()> {
        self.batch.barrier = Some(id);
        self.send()
    }
}

impl Drop for ClickHouseHandle {
    /// The last rows and the last metrics go to the writer, which then
    /// ends; `close` reports its failures.
    fn drop(&mut self) {
        let row = self.metrics.row(self.depth());
        self.batch.metrics.push(row);
        let _ = self.send();
        self.queue = None;
    }
}

/// A worker's writer thread: inserts its batches in order.
struct Writer {
    client: Client,
    retry_for: Duration,
    worker: usize,
    commits: Option<Arc<Commits>>,
    layouts: Arc<Vec<Layout>>,
}

impl Writer {
    fn run(self, batches: &Items<Batch>) -> anyhow::Result<()> {
        let runtime = runtime()?;
        while let Some(batch) = batches.recv() {
            retry(
                "inserting a batch",
                batches.health(),
                self.retry_for,
                transient_while_inserting,
                || runtime.block_on(insert(&self.client, &self.layouts, &batch)),
            )?;
            batches.health().wrote(batch.len());
            if let (Some(id), Some(commits)) = (batch.barrier, &self.commits) {
                commits.arrive(id, self.worker, SinkState::Delivered)?;
            }
        }
        Ok(())
    }
}

/// Inserts a batch table by table. A retry re-sends all of it: rows that
/// were already written collapse with their copies.
async fn insert(
    client: &Client,
    layouts: &[Layout],
    batch: &Batch,
) -> clickhouse::error::Result<()> {
    for (layout, (rows, count)) in layouts.iter().zip(&batch.tables) {
        if *count > 0 {
            let mut insert = client.insert_formatted_with(layout.insert.clone());
            insert.send(bytes::Bytes::copy_from_slice(rows)).await?;
            insert.end().await?;
        }
    }
    if !batch.metrics.is_empty() {
        let mut insert = client.insert::<MetricsRow>("pipeline_metrics").await?;
        for row in &batch.metrics {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    Ok(())
}

#[derive(Row, Serialize, Clone, Copy)]
struct MetricsRow {
    ts: i64,
    process: u32,
    worker: u32,
    period_ms: u32,
    orders: u64,
    trades: u64,
    late: u64,
    rejects: u64,
    watermark: Option<i64>,
    watermark_lag_ms: Option<i64>,
    queue_depth: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_carry_credentials_and_settings() {
        let a = ClickHouseAddress::parse(
            "clickhouse://ann:p%40ss@db.example:9123/market?batch_rows=10&flush_ms=250&queue=3&retry_for=20",
        )
        .unwrap();
        assert_eq!(a.url, "http://db.example:9123");
        assert_eq!(a.database, "market");
        assert_eq!(a.user.as_deref(), Some("ann"));
        assert_eq!(a.password.as_deref(), Some("p@ss"));
        assert_eq!(a.batch_rows, 10);
        assert_eq!(a.flush, Duration::from_millis(250));
        assert_eq!(a.queue, 3);
        assert_eq!(a.retry_for, Duration::from_secs(20));
        // The printable form never has the password.
        assert!(!a.describe().contains("p@ss"));
        let url = |spec: &str| ClickHouseAddress::parse(spec).unwrap().url;
        assert_eq!(url("clickhouse://h/db"), "http://h:8123");
        assert_eq!(url("clickhouse://h/db?secure=true"), "https://h:8443");
        assert_eq!(url("clickhouse://h:9443/db?secure=1"), "https://h:9443");
        assert_eq!(url("clickhouse://h:8124/db?secure=false"), "http://h:8124");
        assert!(ClickHouseAddress::parse("clickhouse://h/db?secure=yes").is_err());
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "clickhouse://h:8123",
            "clickhouse://h:8123/",
            "clickhouse://h:8123/a-b",
            "http://h:8123/db",
            "clickhouse://h:8123/db?batch_rows=0",
            "clickhouse://h:8123/db?colour=red",
        ] {
            assert!(ClickHouseAddress::parse(bad).is_err(), "{bad}");
        }
        // The native protocol's ports are told apart from a typo.
        for native in [
            "clickhouse://h:9000/db",
            "clickhouse://h:9440/db?secure=true",
        ] {
            let error = ClickHouseAddress::parse(native).unwrap_err().to_string();
            assert!(error.contains("speaks HTTP: use port 8123"), "{error}");
        }
    }

    #[test]
    fn network_trouble_and_overload_are_retried_refusals_are_not() {
        use clickhouse::error::Error;
        assert!(transient(&Error::TimedOut));
        assert!(transient(&Error::BadResponse(
            "Code: 241, e.displayText() = DB::Exception: Memory limit exceeded".into()
        )));
        assert!(transient(&Error::BadResponse("502 Bad Gateway".into())));
        let refused = std::io::Error::other("Connection refused (os error 111)");
        assert!(transient(&Error::Network(Box::new(refused))));
        let untrusted = std::io::Error::other(
            "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed",
        );
        assert!(!transient(&Error::Network(Box::new(untrusted))));
        for permanent in [
            "Code: 81, e.displayText() = DB::Exception: Database nope doesn't exist",
            "Code: 516. DB::Exception: default: Authentication failed",
            "Code: 192, e.displayText() = DB::Exception: Unknown user ann",
        ] {
            assert!(
                !transient(&Error::BadResponse(permanent.into())),
                "{permanent}"
            );
        }
        // Mid-run, a table detached by a server on its way down passes.
        let gone = "Code: 60, e.displayText() = DB::Exception: Table m.events doesn't exist.";
        assert!(!transient(&Error::BadResponse(gone.into())));
        assert!(transient_while_inserting(&Error::BadResponse(gone.into())));
        let refused = Error::BadResponse("Code: 516. DB::Exception: Authentication failed".into());
        assert!(!transient_while_inserting(&refused));
    }
}
