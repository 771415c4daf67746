//! The live fan-out: each worker encodes a step's records once and hands
//! them over as one batch per channel (every symbol's, and each symbol's
//! own); clients follow a channel through a bounded ring, so a slow client
//! misses records (and is told how many) instead of slowing the workers or
//! the other clients. The latest candles, bbo, trades and depth per symbol
//! are kept for a page to draw at once.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use operators::dataflow::Record;
use operators::order::{Side, Symbol};
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::sink::SinkHandle;

/// Batches a channel holds for its slowest client.
const RING: usize = 256;
/// Candles kept per symbol and interval.
pub const CANDLES_KEPT: usize = 1000;
/// Trades kept per symbol.
pub const TRADES_KEPT: usize = 100;

/// One record as the contract writes it, and the output it belongs to.
#[derive(Clone, Debug)]
pub struct Live {
    pub output: usize,
    pub json: Bytes,
}

/// A step's records of one channel; `first` is the channel's count of
/// records before them, so a client knows exactly how many it missed.
#[derive(Debug)]
pub struct Batch {
    pub first: u64,
    /// When the worker handed them over, in µs since the Unix epoch: what a
    /// client's delay is measured from.
    pub handed: i64,
    pub records: Vec<Live>,
}

/// One channel: its ring, and the records sent through it so far.
struct Channel {
    sender: broadcast::Sender<Arc<Batch>>,
    sent: Mutex<u64>,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            sender: broadcast::Sender::new(RING),
            sent: Mutex::new(0),
        }
    }

    fn send(&self, records: Vec<Live>, handed: i64) {
        let mut sent = self.sent.lock().expect("channel count");
        let first = *sent;
        *sent += records.len() as u64;
        // No receiver is not an error: the batch is simply not kept.
        let _ = self.sender.send(Arc::new(Batch {
            first,
            handed,
            records,
        }));
    }

    /// A receiver, and the count its first batch starts from.
    fn subscribe(&self) -> (broadcast::Receiver<Arc<Batch>>, u64) {
        let sent = self.sent.lock().expect("channel count");
        (self.sender.subscribe(), *sent)
    }
}

/// The latest state of one symbol.
#[derive(Default)]
struct Latest {
    bbo: Option<Bytes>,
    trades: VecDeque<Bytes>,
    /// Per interval (ms), the newest version of each window, by start.
    candles: BTreeMap<i64, BTreeMap<i64, Bytes>>,
    /// The depth view's latest row of each level that exists, by side and
    /// level (bids first, best first).
    depth: BTreeMap<(Side, u64), Bytes>,
}

/// What `/v1/book` tells of a symbol: its latest bbo, its last trades
/// (oldest first) and its depth levels (bids then asks, best first).
#[derive(Default)]
pub struct Book {
    pub bbo: Option<Bytes>,
    pub trades: Vec<Bytes>,
    pub depth: Vec<Bytes>,
}

/// Shared by the workers (publishing) and the HTTP server (following).
pub struct Hub {
    all: Channel,
    symbols: RwLock<FxHashMap<Symbol, Arc<Channel>>>,
    latest: Mutex<FxHashMap<Symbol, Latest>>,
}

/// What a client follows: every symbol's channel, or each of some symbols'.
pub struct Subscription {
    pub receivers: Vec<(broadcast::Receiver<Arc<Batch>>, u64)>,
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            all: Channel::new(),
            symbols: RwLock::default(),
            latest: Mutex::default(),
        }
    }

    fn channel(&self, symbol: &Symbol) -> Arc<Channel> {
        if let Some(channel) = self.symbols.read().expect("symbols").get(symbol) {
            return Arc::clone(channel);
        }
        let mut symbols = self.symbols.write().expect("symbols");
        Arc::clone(
            symbols
                .entry(symbol.clone())
                .or_insert_with(|| Arc::new(Channel::new())),
        )
    }

    /// Follows `symbols` (every symbol when empty).
    pub fn subscribe(&self, symbols: &[Symbol]) -> Subscription {
        let receivers = if symbols.is_empty() {
            vec![self.all.subscribe()]
        } else {
            symbols
                .iter()
                .map(|s| self.channel(s).subscribe())
                .collect()
        };
        Subscription { receivers }
    }

    /// The newest `limit` candles of `symbol` at `interval` (ms), oldest first.
    pub fn candles(&self, symbol: &str, interval: i64, limit: usize) -> Vec<Bytes> {
        let latest = self.latest.lock().expect("latest");
        let Some(windows) = latest.get(symbol).and_then(|l| l.candles.get(&interval)) else {
            return Vec::new();
        };
        let skip = windows.len().saturating_sub(limit);
        windows.values().skip(skip).cloned().collect()
    }

    /// What is known of `symbol`'s book.
    pub fn book(&self, symbol: &str) -> Book {
        let latest = self.latest.lock().expect("latest");
        latest.get(symbol).map_or_else(Book::default, |l| Book {
            bbo: l.bbo.clone(),
            trades: l.trades.iter().cloned().collect(),
            depth: l.depth.values().cloned().collect(),
        })
    }

    /// Symbols seen so far, sorted.
    pub fn symbols(&self) -> Vec<Symbol> {
        let mut symbols: Vec<_> = self
            .latest
            .lock()
            .expect("latest")
            .keys()
            .cloned()
            .collect();
        symbols.sort_unstable();
        symbols
    }

    fn publish(&self, bytes: Bytes, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let live = |p: &Pending| Live {
            output: p.output,
            json: bytes.slice(p.range.clone()),
        };
        // One clock reading for the step's batches: handed over together.
        let handed = crate::source::now_us();
        self.all.send(pending.iter().map(live).collect(), handed);
        pending.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        let mut latest = self.latest.lock().expect("latest");
        for group in pending.chunk_by(|a, b| a.symbol == b.symbol) {
            let Some(symbol) = &group[0].symbol else {
                continue;
            };
            self.channel(symbol)
                .send(group.iter().map(live).collect(), handed);
            let state = latest.entry(symbol.clone()).or_default();
            for p in group {
                match p.kept {
                    Kept::Nothing => {}
                    Kept::Bbo => state.bbo = Some(bytes.slice(p.range.clone())),
                    Kept::Trade => {
                        if state.trades.len() == TRADES_KEPT {
                            state.trades.pop_front();
                        }
                        state.trades.push_back(bytes.slice(p.range.clone()));
                    }
                    Kept::Candle { interval, start } => {
                        let windows = state.candles.entry(interval).or_default();
                        windows.insert(start, bytes.slice(p.range.clone()));
                        if windows.len() > CANDLES_KEPT {
                            windows.pop_first();
                        }
                    }
                    Kept::Level { side, level, open } => match open {
                        true => {
                            let row = bytes.slice(p.range.clone());
                            state.depth.insert((side, level), row);
                        }
                        false => {
                            state.depth.remove(&(side, level));
                        }
                    },
                }
            }
        }
        pending.clear();
    }
}

/// What the latest state keeps of a record.
#[derive(Clone, Copy)]
enum Kept {
    Nothing,
    Bbo,
    Trade,
    Candle {
        interval: i64,
        start: i64,
    },
    /// A depth level's row; `open` unless the side has no such level now.
    Level {
        side: Side,
        level: u64,
        open: bool,
    },
}

struct Pending {
    output: usize,
    symbol: Option<Symbol>,
    kept: Kept,
    range: Range<usize>,
}

/// A worker's way into the hub: records are encoded as they come and
/// published once per step.
pub struct Publisher {
    hub: Arc<Hub>,
    buffer: Vec<u8>,
    pending: Vec<Pending>,
}

impl Publisher {
    pub fn new(hub: Arc<Hub>) -> Publisher {
        Publisher {
            hub,
            buffer: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl SinkHandle for Publisher {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        let start = self.buffer.len();
        operators::json::write(record, &mut self.buffer);
        let kept = match record {
            Record::Bbo(_) => Kept::Bbo,
            Record::Trade(_) => Kept::Trade,
            Record::Candle(c) => Kept::Candle {
                interval: c.interval.0,
                start: c.window_start,
            },
            Record::Depth(d) => Kept::Level {
                side: d.side,
                level: d.level,
                open: d.price.is_some(),
            },
            Record::Event(_) | Record::Late(_) | Record::Position(_) | Record::Exposure(_) => {
                Kept::Nothing
            }
        };
        self.pending.push(Pending {
            output: record.output(),
            symbol: record.symbol().map(Symbol::from),
            kept,
            range: start..self.buffer.len(),
        });
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut self.buffer));
            self.hub.publish(bytes, &mut self.pending);
        }
        Ok(())
    }

    fn barrier(&mut self, _id: u64) -> anyhow::Result<()> {
        // Clients see records as they come; there is nothing to commit.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use operators::decimal::Fixed;
    use operators::output::{Bbo, Depth};

    fn bbo(symbol: &str, seq: u64) -> Record {
        Record::Bbo(Bbo {
            symbol: symbol.into(),
            seq,
            bid: Some(Fixed::units(100)),
            bid_qty: Some(Fixed::units(1)),
            ask: None,
            ask_qty: None,
            ts: 1_700_000_000_000,
        })
    }

    #[test]
    fn a_client_of_one_symbol_gets_its_records_and_counts_what_it_missed() {
        let hub = Arc::new(Hub::new());
        let mut publisher = Publisher::new(Arc::clone(&hub));
        let Subscription { mut receivers } = hub.subscribe(&["A".into()]);
        let (mut receiver, start) = receivers.pop().expect("one receiver");
        assert_eq!(start, 0);
        for seq in 1..=3 {
            publisher.write(&bbo("A", seq)).unwrap();
            publisher.write(&bbo("B", seq)).unwrap();
        }
        publisher.flush().unwrap();
        let batch = receiver.try_recv().expect("a batch");
        assert_eq!(batch.first, 0);
        let seqs: Vec<_> = batch
            .records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                (
                    v["symbol"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(seqs, [("A".into(), 1), ("A".into(), 2), ("A".into(), 3)]);
        // A ring overrun: the receiver hears how many batches it lost and
        // the next batch's `first` says how many records.
        for seq in 0..(RING as u64 + 10) {
            publisher.write(&bbo("A", seq)).unwrap();
            publisher.flush().unwrap();
        }
        assert!(matches!(
            receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        assert_eq!(receiver.try_recv().unwrap().first, 3 + 10);
        let book = hub.book("A");
        let latest: serde_json::Value = serde_json::from_slice(&book.bbo.unwrap()).unwrap();
        assert_eq!(latest["seq"], RING as u64 + 9);
        assert!(book.trades.is_empty());
        assert_eq!(hub.symbols(), ["A", "B"]);
    }

    fn level(side: Side, level: u64, price: Option<i64>, seq: u64) -> Record {
        Record::Depth(Depth {
            symbol: "A".into(),
            side,
            level,
            price: price.map(Fixed::units),
            qty: Fixed::units(price.map_or(0, |_| 2)),
            orders: u64::from(price.is_some()),
            seq,
        })
    }

    #[test]
    fn the_book_keeps_each_open_depth_level_bids_first_best_first() {
        let hub = Arc::new(Hub::new());
        let mut publisher = Publisher::new(Arc::clone(&hub));
        for record in [
            level(Side::Sell, 2, Some(103), 1),
            level(Side::Sell, 1, Some(102), 1),
            level(Side::Buy, 2, Some(99), 1),
            level(Side::Buy, 1, Some(100), 1),
        ] {
            publisher.write(&record).unwrap();
        }
        publisher.flush().unwrap();
        // Later: the second bid level is gone and the best ask moved.
        publisher.write(&level(Side::Buy, 2, None, 2)).unwrap();
        publisher
            .write(&level(Side::Sell, 1, Some(101), 2))
            .unwrap();
        publisher.flush().unwrap();
        let levels: Vec<(String, u64, String, u64)> = hub
            .book("A")
            .depth
            .iter()
            .map(|row| {
                let v: serde_json::Value = serde_json::from_slice(row).unwrap();
                (
                    v["side"].as_str().unwrap().to_string(),
                    v["level"].as_u64().unwrap(),
                    v["price"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        let row = |side: &str, level, price: &str, seq| (side.into(), level, price.into(), seq);
        assert_eq!(
            levels,
            [
                row("buy", 1, "100", 1),
                row("sell", 1, "101", 2),
                row("sell", 2, "103", 1),
            ]
        );
    }
}
