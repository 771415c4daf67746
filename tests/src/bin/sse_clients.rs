//! `sse-clients URL CLIENTS SECONDS [RECEIVE_KIB]`: the fan-out benchmark's
//! clients (`scripts/fanout.sh`). Opens CLIENTS Server-Sent Events streams
//! of URL at once, reads them for SECONDS, and prints one line: clients,
//! records received, records/s, records missed, streams the server ended
//! first, and the delay from each record's handover (the `: handed µs`
//! comment opening each batch) to its arrival, p50/p99/max in ms.
//!
//! RECEIVE_KIB sets each client's socket receive buffer (`SO_RCVBUF`);
//! without it the kernel sizes the buffer as it sees fit (up to
//! `net.ipv4.tcp_rmem`'s maximum, 32 MiB here), and a client that reads
//! slower than its symbol's flow has whatever that buffer holds queued in
//! front of every record it reads: a client that wants the newest records
//! keeps it small, so the server's ring drops the backlog instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// What one client saw.
struct Seen {
    delays: Histogram<u64>,
    records: u64,
    missed: u64,
    /// Streams the server ended before the client did.
    cut: u64,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            delays: Histogram::new(3).expect("3 significant figures"),
            records: 0,
            missed: 0,
            cut: 0,
        }
    }

    /// Takes complete lines: the handover time from a batch's comment,
    /// one record per `data:` line of a record event. The records of one
    /// batch that arrive together share a delay, recorded once; lines are
    /// found with memchr, so that the clients' own reading (one thread for
    /// all of them) costs little beside what the server sends.
    fn read(&mut self, lines: &[u8], now_us: u64, handed: &mut Option<u64>, missed: &mut bool) {
        let number = |bytes: &[u8]| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok();
        let mut batch = 0;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', lines).chain([lines.len()]) {
            let line = &lines[start..end];
            start = end + 1;
            match line.first() {
                Some(b':') => {
                    if let Some(at) = line.strip_prefix(b": handed ") {
                        self.record(std::mem::take(&mut batch), now_us, *handed);
                        *handed = number(at);
                    }
                }
                Some(b'e') => *missed |= line == b"event: missed",
                Some(b'd') if std::mem::take(missed) => {
                    let n = line
                        .strip_prefix(b"data: {\"missed\":")
                        .and_then(|n| n.strip_suffix(b"}"));
                    self.missed += n.and_then(number).unwrap_or(0);
                }
                Some(b'd') => batch += 1,
                _ => {}
            }
        }
        self.record(batch, now_us, *handed);
    }

    /// `count` records of the batch handed over at `handed` arrived at `now_us`.
    fn record(&mut self, count: u64, now_us: u64, handed: Option<u64>) {
        self.records += count;
        if let (Some(at), true) = (handed, count > 0) {
            self.delays.record_n(now_us.saturating_sub(at), count).ok();
        }
    }
}

/// Connects to `authority`, with a receive buffer of `receive` bytes if given.
async fn connect(authority: &str, receive: Option<u32>) -> std::io::Result<tokio::net::TcpStream> {
    let address = tokio::net::lookup_host(authority)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(bytes) = receive {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.connect(address).await
}

/// One client: follows `url` until `until`, into `seen`.
async fn follow(
    url: hyper::Uri,
    receive: Option<u32>,
    until: Instant,
    seen: Arc<Mutex<Seen>>,
) -> Result<(), String> {
    let authority = url.authority().ok_or("no host in the URL")?.clone();
    let stream = connect(authority.as_str(), receive)
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    let mut local = Seen::new();
    let mut pending = Vec::new();
    let mut handed = None;
    let mut missed = false;
    let body = response.body_mut();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, body.frame()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            // The server went away (the run ended): what came counts.
            Ok(Some(Err(_))) => {
                local.cut = 1;
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = orderflow_tests::now_us() as u64;
        // Only whole lines: a step may arrive in more than one frame, and
        // the part of a line that ends in the next waits for it.
        let Some(end) = memchr::memrchr(b'\n', &data) else {
            pending.extend_from_slice(&data);
            continue;
        };
        if pending.is_empty() {
            local.read(&data[..end], now, &mut handed, &mut missed);
        } else {
            pending.extend_from_slice(&data[..end]);
            local.read(&pending, now, &mut handed, &mut missed);
            pending.clear();
        }
        pending.extend_from_slice(&data[end + 1..]);
    }
    let mut seen = seen.lock().map_err(|_| "poisoned")?;
    seen.records += local.records;
    seen.missed += local.missed;
    seen.cut += local.cut;
    seen.delays.add(&local.delays).map_err(|e| e.to_string())?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, clients, seconds, receive) = match args.as_slice() {
        [url, clients, seconds] => (url, clients, seconds, None),
        [url, clients, seconds, kib] => (url, clients, seconds, Some(kib)),
        _ => {
            eprintln!("usage: sse-clients URL CLIENTS SECONDS [RECEIVE_KIB]");
            std::process::exit(2);
        }
    };
    let receive = receive.map(|kib| kib.parse::<u32>().expect("KiB") << 10);
    let url: hyper::Uri = url.parse().expect("a URL");
    let clients: usize = clients.parse().expect("a number of clients");
    let seconds: f64 = seconds.parse().expect("seconds");
    // One thread: the clients must leave the pipeline its cores' share.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let seen = Arc::new(Mutex::new(Seen::new()));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let failures = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(follow(url.clone(), receive, until, Arc::clone(&seen))))
            .collect();
        let mut failures = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
        failures
    });
    if let Some(first) = failures.first() {
        eprintln!(
            "{} of {clients} clients failed; the first: {first}",
            failures.len()
        );
        std::process::exit(1);
    }
    let seen = seen.lock().expect("every client is done");
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |q: f64| seen.delays.value_at_quantile(q) as f64 / 1e3;
    println!(
        "clients {clients} · records {} · {:.0} records/s · missed {} · cut {} · delay p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
        seen.records,
        seen.records as f64 / elapsed,
        seen.missed,
        seen.cut,
        ms(0.5),
        ms(0.99),
        seen.delays.max() as f64 / 1e3,
    );
}
