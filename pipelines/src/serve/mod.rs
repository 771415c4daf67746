//! `run --serve ADDR`: an HTTP server beside the timely workers, on a
//! runtime thread of its own. It only reads what the run keeps anyway (the
//! counters, the sinks' health, the latency histogram) and what the workers
//! publish to the [`hub::Hub`] once per step, so clients never slow the
//! pipeline.
//!
//! - `GET /metrics`: Prometheus text.
//! - `GET /v1/stream?outputs=…&symbols=…`: Server-Sent Events, or a
//!   WebSocket when asked to upgrade.
//! - `GET /v1/candles?symbol=S&interval=1m&limit=500`, `GET /v1/book?symbol=S`,
//!   `GET /v1/info`: the latest state, so a page can draw at once.
//! - `GET /`: the live chart; `GET /healthz`, `GET /readyz`.

pub mod hub;
mod metrics;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream, StreamExt};
use operators::output::OUTPUTS;
use operators::window::Interval;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::checkpoint::Checkpointer;
use crate::latency::Latency;
use crate::progress::Counters;
use crate::sink::Sink;
use hub::{Batch, Hub, Live, CANDLES_KEPT};

/// An idle stream says it is alive this often, so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The least time between two writes to one stream: batches that come
/// sooner are gathered into the next write.
const LINGER: Duration = Duration::from_millis(10);
/// Unsent bytes a connection may leave in the kernel before its next write
/// waits. A slow client's backlog then stays in its channel's ring, where
/// newer records replace it and the client is told what it missed, rather
/// than in a send buffer the kernel grows to megabytes: seconds of a hot
/// symbol's records, all delivered late. Bytes in flight to the client do
/// not count, so a distant client's throughput is not capped.
const UNSENT: u32 = 16 << 10;
/// What hyper may hold of a connection's writes before it stops asking the
/// stream for more (its default, 400 KiB, is seconds of a hot symbol's
/// records queued in front of the newest; also the longest request head).
const BUFFERED: usize = 16 << 10;
/// The most one write to a stream carries of its channels' backlog: a
/// client further behind gets the newest batches and is told how many
/// records it missed, so that what it receives is recent. Far above what a
/// client that keeps up gathers in a LINGER (a busy symbol's 10 ms can pass
/// 16 KiB), so only a client that fell behind loses records to it.
const STEP_BYTES: usize = 256 << 10;
/// What `/v1/stream` sends when `outputs` is not given.
const DEFAULT_OUTPUTS: [&str; 3] = ["trades", "bbo", "candles"];

/// The first tick of the server's LINGER grid at or after `last + LINGER`:
/// every stream that waits wakes on the same ticks, so the serving thread
/// wakes once per tick for all of them rather than once per stream.
fn tick_after(last: tokio::time::Instant) -> tokio::time::Instant {
    static GRID: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *GRID.get_or_init(tokio::time::Instant::now);
    let since = (last + LINGER).saturating_duration_since(origin).as_nanos();
    let step = LINGER.as_nanos();
    origin + Duration::from_nanos((since.div_ceil(step) * step) as u64)
}

const PAGE: &str = include_str!("assets/index.html");
const CHARTS: &str = include_str!("assets/lightweight-charts.standalone.production.js");

/// A sink as `/metrics` and `/readyz` name it.
pub struct WatchedSink {
    pub kind: &'static str,
    pub sink: Arc<dyn Sink>,
}

/// Where a source partition stood when its worker last reported.
#[derive(Clone, Copy, Debug)]
pub struct PartitionState {
    /// `i64::MIN` before the partition had a valid message.
    pub watermark: i64,
    /// No message for `--idle-timeout`, or ended.
    pub idle: bool,
    /// Kafka's consumer lag, in messages.
    pub lag: Option<i64>,
}

/// What the server reads of the run.
pub struct Watch {
    pub hub: Arc<Hub>,
    pub counters: Arc<Counters>,
    pub latency: Arc<Latency>,
    pub sinks: Vec<WatchedSink>,
    /// Workers of this process.
    pub workers: usize,
    /// Each source partition of this process, by id.
    pub partitions: Mutex<BTreeMap<u32, PartitionState>>,
    /// Workers of this process that have opened their sources.
    pub opened: AtomicUsize,
    pub checkpointer: Option<Arc<Checkpointer>>,
    pub intervals: Vec<Interval>,
}

impl Watch {
    /// Why the run is not ready, or `None` when it is.
    fn unready(&self) -> Option<String> {
        if self.opened.load(Ordering::Relaxed) < self.workers {
            return Some("sources not open yet".into());
        }
        let failing: Vec<String> = self
            .sinks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                Some(format!(
                    "sink {i} ({}): {}",
                    s.kind,
                    s.sink.health().error()?
                ))
            })
            .collect();
        (!failing.is_empty()).then(|| failing.join("\n"))
    }
}

/// The running server; stops when dropped.
pub struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    pub address: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // The run is over: a stream writes at most every LINGER, so
            // its last records go out within two.
            std::thread::sleep(2 * LINGER);
            runtime.shutdown_background();
        }
    }
}

/// Binds `address` (so a taken port fails the run at once) and serves on
/// one runtime thread: the workers keep the cores.
pub fn start(address: SocketAddr, watch: Arc<Watch>) -> anyhow::Result<Server> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("--serve {address}: cannot listen there"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("serve")
        .enable_all()
        .build()
        .context("starting the HTTP server's runtime")?;
    let app = Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }),
        )
        .route(
            "/assets/lightweight-charts.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], CHARTS) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/info", get(info))
        .route("/v1/candles", get(candles))
        .route("/v1/book", get(book))
        .route("/v1/stream", get(follow))
        .with_state(watch);
    runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => return tracing::error!("--serve: {e}"),
        };
        loop {
            let mut stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of descriptors, most likely: wait for some to close.
                Err(e) => {
                    tracing::debug!("--serve: accepting: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            limit_unsent(&mut stream);
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(BUFFERED)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(e) = connection.await {
                    tracing::debug!("--serve: a connection: {e}");
                }
            });
        }
    });
    Ok(Server {
        runtime: Some(runtime),
        address,
    })
}

/// Sets [`UNSENT`] on an accepted connection (Linux's `TCP_NOTSENT_LOWAT`;
/// elsewhere the kernel's default holds).
fn limit_unsent(stream: &mut tokio::net::TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = UNSENT as libc::c_int;
        // SAFETY: the descriptor is the open socket `stream` owns, and the
        // option's value is a `c_int` that lives through the call.
        let set = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!("--serve: TCP_NOTSENT_LOWAT on a connection: {error}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

type Shared = State<Arc<Watch>>;

async fn readyz(State(watch): Shared) -> Response {
    match watch.unready() {
        None => "ready\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(watch): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(&watch),
    )
        .into_response()
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

/// Joins records (each a JSON object) into a JSON array.
fn array(records: &[Bytes]) -> String {
    let mut out = String::from("[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(record).unwrap_or("null"));
    }
    out.push(']');
    out
}

fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `{"symbols":[…],"intervals":[…]}`: what a page can ask for.
async fn info(State(watch): Shared) -> Response {
    let symbols: Vec<String> = watch.hub.symbols().iter().map(|s| quoted(s)).collect();
    let intervals: Vec<String> = watch
        .intervals
        .iter()
        .map(|i| quoted(&i.to_string()))
        .collect();
    json(format!(
        r#"{{"symbols":[{}],"intervals":[{}]}}"#,
        symbols.join(","),
        intervals.join(",")
    ))
}

#[derive(Deserialize)]
struct CandlesQuery {
    symbol: String,
    interval: String,
    limit: Option<usize>,
}

async fn candles(State(watch): Shared, Query(q): Query<CandlesQuery>) -> Response {
    let interval: Interval = match q.interval.parse() {
        Ok(i) if watch.intervals.contains(&i) => i,
        _ => {
            let known: Vec<String> = watch.intervals.iter().map(ToString::to_string).collect();
            return bad_request(format!(
                "interval `{}` is not one of this run's: {}",
                q.interval,
                known.join(", ")
            ));
        }
    };
    let limit = q.limit.unwrap_or(500).min(CANDLES_KEPT);
    json(array(&watch.hub.candles(&q.symbol, interval.0, limit)))
}

#[derive(Deserialize)]
struct BookQuery {
    symbol: String,
}

/// The symbol's best bid/offer, its last trades (oldest first) and its
/// depth levels (the depth view's rows, bids then asks, best first; empty
/// without the views).
async fn book(State(watch): Shared, Query(q): Query<BookQuery>) -> Response {
    let book = watch.hub.book(&q.symbol);
    let bbo = book
        .bbo
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("null");
    json(format!(
        r#"{{"symbol":{},"bbo":{bbo},"trades":{},"depth":{}}}"#,
        quoted(&q.symbol),
        array(&book.trades),
        array(&book.depth)
    ))
}

#[derive(Deserialize)]
struct StreamQuery {
    outputs: Option<String>,
    symbols: Option<String>,
}

/// What one client follows.
struct Filter {
    outputs: [bool; OUTPUTS.len()],
    symbols: Vec<operators::order::Symbol>,
}

impl Filter {
    fn parse(q: &StreamQuery) -> Result<Filter, String> {
        let mut outputs = [false; OUTPUTS.len()];
        let names: Vec<&str> = match &q.outputs {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            None => DEFAULT_OUTPUTS.to_vec(),
        };
        for name in names {
            let Some(index) = OUTPUTS.iter().position(|o| o.name == name) else {
                let known = OUTPUTS.map(|o| o.name).join(", ");
                return Err(format!("`{name}` is not an output: {known}"));
            };
            outputs[index] = true;
        }
        let symbols = q
            .symbols
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Into::into)
            .collect();
        Ok(Filter { outputs, symbols })
    }
}

/// What a client is sent next: how many records of its channel it missed
/// (its ring overran) and the records of its outputs that followed.
struct Step {
    missed: u64,
    records: Vec<Live>,
    /// (index in `records`, handover µs) where each batch's records begin.
    handed: Vec<(usize, i64)>,
}

/// One channel as a stream of steps.
fn steps(
    receiver: broadcast::Receiver<Arc<Batch>>,
    next: u64,
    outputs: [bool; OUTPUTS.len()],
) -> impl Stream<Item = Option<Step>> {
    stream::unfold(
        (receiver, next, None),
        move |(mut receiver, mut next, mut last): (_, u64, Option<tokio::time::Instant>)| async move {
            loop {
                let batch = match tokio::time::timeout(KEEPALIVE, receiver.recv()).await {
                    // Quiet: an empty step keeps the connection alive.
                    Err(_) => return Some((None, (receiver, next, last))),
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    Ok(Ok(batch)) => batch,
                };
                // A write per client per LINGER at most, however finely
                // the workers step (writes, not bytes, are what a thousand
                // clients cost); a quiet channel's record goes at once.
                if let Some(last) = last {
                    tokio::time::sleep_until(tick_after(last)).await;
                }
                // Everything the ring holds for this client, of which it
                // gets the newest STEP_BYTES (at least one batch).
                let mut batches = vec![batch];
                loop {
                    match receiver.try_recv() {
                        Ok(b) => batches.push(b),
                        // Overrun meanwhile: the next batch counts the loss.
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                let wants = |r: &&Live| outputs[r.output];
                let mut bytes = 0;
                let newest = batches.iter().rev().take_while(|b| {
                    let fits = bytes < STEP_BYTES;
                    bytes += b
                        .records
                        .iter()
                        .filter(wants)
                        .map(|r| r.json.len())
                        .sum::<usize>();
                    fits
                });
                let kept = newest.count();
                let mut step = Step {
                    missed: 0,
                    records: Vec::new(),
                    handed: Vec::new(),
                };
                for b in &batches[batches.len() - kept..] {
                    step.missed += b.first.saturating_sub(next);
                    next = b.first + b.records.len() as u64;
                    step.handed.push((step.records.len(), b.handed));
                    step.records.extend(b.records.iter().filter(wants).cloned());
                }
                if step.missed > 0 || !step.records.is_empty() {
                    last = Some(tokio::time::Instant::now());
                    return Some((Some(step), (receiver, next, last)));
                }
            }
        },
    )
}

async fn follow(
    State(watch): Shared,
    Query(q): Query<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let filter = match Filter::parse(&q) {
        Ok(filter) => filter,
        Err(why) => return bad_request(why),
    };
    let outputs = filter.outputs;
    let subscription = watch.hub.subscribe(&filter.symbols);
    let merged = stream::select_all(
        subscription
            .receivers
            .into_iter()
            .map(|(receiver, next)| Box::pin(steps(receiver, next, outputs))),
    );
    match upgrade {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| websocket(socket, merged)),
        Err(_) => {
            let body = merged.map(|step| Ok::<_, Infallible>(Bytes::from(server_sent(step))));
            (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                Body::from_stream(body),
            )
                .into_response()
        }
    }
}

/// A step as Server-Sent Events: each record an event named after its
/// output, with the contract's JSON as data; a `missed` event first when
/// records were lost; a comment when there was nothing to send. Each
/// batch's records open with the comment `: handed µs`, when the worker
/// handed them over (browsers ignore comments; `scripts/fanout.sh`
/// measures delay with it).
fn server_sent(step: Option<Step>) -> Vec<u8> {
    let Some(step) = step else {
        return b": keepalive\n\n".to_vec();
    };
    let size: usize = step.records.iter().map(|r| r.json.len() + 16).sum();
    let mut out = Vec::with_capacity(size + 64);

    if step.missed > 0 {
        out.extend_from_slice(
            format!("event: missed\ndata: {{\"missed\":{}}}\n\n", step.missed).as_bytes(),
        );
    }
    let mut handed = step.handed.iter().peekable();
    for (i, record) in step.records.iter().enumerate() {
        while let Some((_, at)) = handed.next_if(|(start, _)| *start == i) {
            out.extend_from_slice(format!(": handed {at}\n").as_bytes());
        }
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(OUTPUTS[record.output].name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(&record.json);
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// The same steps over a WebSocket: one text message per record,
/// `{"output":NAME,"data":RECORD}`, and `{"output":"missed","data":{"missed":N}}`.
async fn websocket(mut socket: WebSocket, mut steps: impl Stream<Item = Option<Step>> + Unpin) {
    while let Some(step) = steps.next().await {
        let Some(step) = step else {
            if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                return;
            }
            continue;
        };
        let mut messages = Vec::with_capacity(step.records.len() + 1);
        if step.missed > 0 {
            messages.push(format!(
                r#"{{"output":"missed","data":{{"missed":{}}}}}"#,
                step.missed
            ));
        }
        for record in &step.records {
            let data = std::str::from_utf8(&record.json).unwrap_or("null");
            messages.push(format!(
                r#"{{"output":"{}","data":{data}}}"#,
                OUTPUTS[record.output].name
            ));
        }
        for message in messages {
            if socket.send(Message::Text(message.into())).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_wait_at_least_a_linger_and_meet_on_one_grid() {
        let start = tokio::time::Instant::now();
        let ticks: Vec<_> = (0..40)
            .map(|i| {
                let last = start + Duration::from_micros(i * 700);
                let tick = tick_after(last);
                assert!(tick >= last + LINGER && tick < last + 2 * LINGER);
                tick
            })
            .collect();
        // 40 writes 0.7 ms apart wake on three or four ticks, not 40.
        let mut distinct = ticks.clone();
        distinct.dedup();
        assert!(distinct.len() <= 4, "{} ticks", distinct.len());
    }
}
