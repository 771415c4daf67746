//! Event-time candles: epoch-aligned windows per interval, closed by a
//! partition's watermark, re-emitted for trades within the allowed lateness.
//!
//! All windows fed by one source partition share that partition's
//! watermark, so [`Windows`] is kept per partition: the candle decisions then
//! depend only on the partition's own order, never on how partitions
//! interleave, which is what makes candles identical for any worker count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use std::fmt;
use std::str::FromStr;

use crate::decimal::{Fixed, Notional, Wide};
use crate::order::Symbol;
use crate::output::{Candle, Late, Trade};

/// A duration in milliseconds, written `500ms`, `1s`, `1m`, `5m`, `1h`, `1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(pub i64);

const UNITS: [(&str, i64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl FromStr for Interval {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (n, unit) = text.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("`{text}`: expected a number and a unit, like 1s or 5m"))?;
        let (_, scale) = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(|| format!("`{text}`: unit must be one of ms, s, m, h, d"))?;
        n.checked_mul(*scale)
            .map(Interval)
            .ok_or_else(|| format!("`{text}` is too long"))
    }
}

impl fmt::Display for Interval {
    /// In the largest unit that divides it: `60000` is `1m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = UNITS
            .iter()
            .find(|(_, s)| self.0 != 0 && self.0 % s == 0)
            .unwrap_or(&("ms", 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How candles are cut: the intervals and the allowed lateness.
#[derive(Clone, Debug)]
pub struct CandleSpec {
    pub intervals: Vec<Interval>,
    pub lateness: i64,
}

/// A window's running aggregate. Open and close keep the event time and an
/// arrival number so that ties resolve to the earliest (open) and latest
/// (close) arrival.
#[derive(Debug)]
struct Window {
    open: (i64, u64, Fixed),
    close: (i64, u64, Fixed),
    high: Fixed,
    low: Fixed,
    volume: i128,
    notional: Notional,
    trades: u64,
    /// Times emitted so far: 0 until the watermark first passes the end.
    version: u32,
}

impl Window {
    fn new(ts: i64, arrival: u64, price: Fixed) -> Window {
        Window {
            open: (ts, arrival, price),
            close: (ts, arrival, price),
            high: price,
            low: price,
            volume: 0,
            notional: Notional::default(),
            trades: 0,
            version: 0,
        }
    }

    fn add(&mut self, trade: &Trade, arrival: u64) {
        if trade.ts < self.open.0 {
            self.open = (trade.ts, arrival, trade.price);
        }
        if trade.ts >= self.close.0 {
            self.close = (trade.ts, arrival, trade.price);
        }
        self.high = self.high.max(trade.price);
        self.low = self.low.min(trade.price);
        self.volume += i128::from(trade.qty.0);
        self.notional += Notional::of(trade.price.0.into(), trade.qty.0.into());
        self.trades += 1;
    }
}

/// An open window as a checkpoint keeps it: prices and quantities in
/// fixed-point units, the notional as its two 128-bit words.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowState {
    pub symbol: Symbol,
    /// The interval's length in ms (not its index: the spec may list
    /// intervals in another order on restore).
    pub interval: i64,
    pub start: i64,
    pub open: (i64, u64, i64),
    pub close: (i64, u64, i64),
    pub high: i64,
    pub low: i64,
    pub volume: i128,
    pub notional: (i128, i128),
    pub trades: u64,
    pub version: u32,
}

/// The windows of one partition on one worker, as a checkpoint keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowsState {
    pub watermark: i64,
    pub arrivals: u64,
    pub windows: Vec<WindowState>,
}

/// Identifies a window: symbol, interval (index into the spec), start.
type Key = (Symbol, usize, i64);

/// What a watermark advance has to do at a given time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// The watermark passed the end: emit the first version.
    Emit,
    /// The allowed lateness passed too: forget the window.
    Retire,
}

/// The open windows of every symbol fed by one partition.
#[derive(Debug)]
pub struct Windows {
    spec: CandleSpec,
    watermark: i64,
    arrivals: u64,
    open: FxHashMap<Key, Window>,
    timers: BinaryHeap<Reverse<(i64, Due, Key)>>,
}

impl Windows {
    pub fn new(spec: CandleSpec) -> Windows {
        Windows {
            spec,
            watermark: i64::MIN,
            arrivals: 0,
            open: FxHashMap::default(),
            timers: BinaryHeap::new(),
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The open windows, sorted so that equal state writes equal bytes.
    pub fn snapshot(&self) -> WindowsState {
        let mut windows: Vec<WindowState> = self
            .open
            .iter()
            .map(|((symbol, i, start), w)| WindowState {
                symbol: symbol.clone(),
                interval: self.spec.intervals[*i].0,
                start: *start,
                open: (w.open.0, w.open.1, w.open.2 .0),
                close: (w.close.0, w.close.1, w.close.2 .0),
                high: w.high.0,
                low: w.low.0,
                volume: w.volume,
                notional: w.notional.0.into_words(),
                trades: w.trades,
                version: w.version,
            })
            .collect();
        windows.sort_unstable_by(|a, b| {
            (&a.symbol, a.interval, a.start).cmp(&(&b.symbol, b.interval, b.start))
        });
        WindowsState {
            watermark: self.watermark,
            arrivals: self.arrivals,
            windows,
        }
    }

    /// Takes in the windows of a snapshot (several, when the partition's
    /// symbols were spread over other workers before), keeping those `keep`
    /// accepts. Fails on a window of an interval this spec lacks: candles
    /// would silently change meaning.
    pub fn restore(
        &mut self,
        state: WindowsState,
        keep: impl Fn(&Symbol) -> bool,
    ) -> Result<(), String> {
        self.watermark = self.watermark.max(state.watermark);
        self.arrivals = self.arrivals.max(state.arrivals);
        for w in state.windows.into_iter().filter(|w| keep(&w.symbol)) {
            let i = self
                .spec
                .intervals
                .iter()
                .position(|i| i.0 == w.interval)
                .ok_or_else(|| format!("a window of interval {}", Interval(w.interval)))?;
            let key = (w.symbol, i, w.start);
            let end = self.end(&key);
            // Each open window has one timer: its first emission until then,
            // its retirement after.
            let timer = match w.version {
                0 => (end, Due::Emit),
                _ => (end.saturating_add(self.spec.lateness), Due::Retire),
            };
            self.timers.push(Reverse((timer.0, timer.1, key.clone())));
            self.open.insert(
                key,
                Window {
                    open: (w.open.0, w.open.1, Fixed(w.open.2)),
                    close: (w.close.0, w.close.1, Fixed(w.close.2)),
                    high: Fixed(w.high),
                    low: Fixed(w.low),
                    volume: w.volume,
                    notional: Notional(ethnum::I256::from_words(w.notional.0, w.notional.1)),
                    trades: w.trades,
                    version: w.version,
                },
            );
        }
        Ok(())
    }

    /// Moves the watermark forward (never back), emitting every window whose
    /// end it passes and forgetting those past their allowed lateness.
    pub fn advance(&mut self, watermark: i64, candles: &mut Vec<Candle>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        while let Some(Reverse((due, _, _))) = self.timers.peek() {
            if *due > watermark {
                break;
            }
            let Reverse((_, what, key)) = self.timers.pop().expect("peeked");
            match what {
                Due::Emit => {
                    let end = self.end(&key);
                    let retire = end.saturating_add(self.spec.lateness);
                    if let Some(window) = self.open.get_mut(&key) {
                        window.version += 1;
                        candles.push(self.candle(&key));
                    }
                    self.timers.push(Reverse((retire, Due::Retire, key)));
                }
                Due::Retire => {
                    self.open.remove(&key);
                }
            }
        }
    }

    /// Folds a trade into its window at each interval, at the current
    /// watermark: a window already emitted is emitted again with the next
    /// version; one past its allowed lateness takes nothing and the trade
    /// goes to `late` instead.
    pub fn add(&mut self, trade: &Trade, candles: &mut Vec<Candle>, late: &mut Vec<Late>) {
        self.arrivals += 1;
        for (i, interval) in self.spec.intervals.iter().enumerate() {
            let start = trade.ts.div_euclid(interval.0) * interval.0;
            let end = start.saturating_add(interval.0);
            if end.saturating_add(self.spec.lateness) <= self.watermark {
                late.push(Late {
                    trade: trade.clone(),
                    interval: *interval,
                });
                continue;
            }
            let key = (trade.symbol.clone(), i, start);
            let closed = end <= self.watermark;
            match self.open.get_mut(&key) {
                Some(window) => window.add(trade, self.arrivals),
                None => {
                    let mut window = Window::new(trade.ts, self.arrivals, trade.price);
                    window.add(trade, self.arrivals);
                    self.open.insert(key.clone(), window);
                    // A window first seen after its end (but within the
                    // lateness) is emitted at once, so only its retirement waits.
                    let timer = match closed {
                        true => (end.saturating_add(self.spec.lateness), Due::Retire),
                        false => (end, Due::Emit),
                    };
                    self.timers.push(Reverse((timer.0, timer.1, key.clone())));
                }
            }
            if closed {
                self.open.get_mut(&key).expect("just added").version += 1;
                candles.push(self.candle(&key));
            }
        }
    }

    fn end(&self, key: &Key) -> i64 {
        key.2.saturating_add(self.spec.intervals[key.1].0)
    }

    fn candle(&self, key: &Key) -> Candle {
        let w = &self.open[key];
        Candle {
            symbol: key.0.clone(),
            interval: self.spec.intervals[key.1],
            window_start: key.2,
            window_end: self.end(key),
            open: w.open.2,
            high: w.high,
            low: w.low,
            close: w.close.2,
            volume: Wide(w.volume),
            vwap: w.notional.vwap(w.volume).expect("a window has trades"),
            trades: w.trades,
            version: w.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Side;

    fn trade(seq: u64, price: &str, qty: &str, ts: i64) -> Trade {
        Trade {
            symbol: "ACME".into(),
            seq,
            price: price.parse().unwrap(),
            qty: qty.parse().unwrap(),
            maker_order_id: "m".into(),
            taker_order_id: "t".into(),
            taker_side: Side::Buy,
            ts,
            maker_account: None,
            taker_account: None,
        }
    }

    fn minute(lateness: i64) -> Windows {
        Windows::new(CandleSpec {
            intervals: vec!["1m".parse().unwrap()],
            lateness,
        })
    }

    #[test]
    fn intervals_read_and_print_in_their_largest_unit() {
        assert_eq!("5m".parse(), Ok(Interval(300_000)));
        assert_eq!(Interval(3_600_000).to_string(), "1h");
        assert_eq!(Interval(1_500).to_string(), "1500ms");
        assert!("5x".parse::<Interval>().is_err());
        assert!("m".parse::<Interval>().is_err());
    }

    #[test]
    fn emits_when_the_watermark_passes_the_end() {
        let (mut w, mut candles, mut late) = (minute(5_000), vec![], vec![]);
        w.add(&trade(1, "100", "3", 60_500), &mut candles, &mut late);
        w.add(&trade(2, "101", "1", 61_000), &mut candles, &mut late);
        w.advance(119_999, &mut candles);
        assert!(candles.is_empty());
        w.advance(120_000, &mut candles);
        assert_eq!(candles.len(), 1);
        let c = &candles[0];
        assert_eq!(
            (c.window_start, c.window_end, c.trades, c.version),
            (60_000, 120_000, 2, 1)
        );
        assert_eq!(c.vwap.to_string(), "100.25");
        assert_eq!(c.volume.to_string(), "4");
    }

    #[test]
    fn the_largest_trades_the_contract_admits_sum_exactly() {
        // Each notional takes 126 bits: an i128 sum overflowed at the third.
        let (mut w, mut candles, mut late) = (minute(0), vec![], vec![]);
        let max = "92233720368.54775807";
        for seq in 1..=5 {
            w.add(&trade(seq, max, max, 60_000), &mut candles, &mut late);
        }
        w.advance(120_000, &mut candles);
        assert_eq!(candles[0].vwap.to_string(), max);
        assert_eq!(candles[0].volume.to_string(), "461168601842.73879035");
    }

    #[test]
    fn a_trade_within_lateness_re_emits_and_beyond_it_is_late() {
        let (mut w, mut candles, mut late) = (minute(5_000), vec![], vec![]);
        w.add(&trade(1, "100", "1", 60_500), &mut candles, &mut late);
        w.advance(121_000, &mut candles);
        w.add(&trade(2, "99", "1", 119_000), &mut candles, &mut late);
        assert_eq!(candles.len(), 2);
        assert_eq!(
            (candles[1].version, candles[1].low, candles[1].close),
            (2, Fixed::units(99), Fixed::units(99))
        );
        w.advance(125_000, &mut candles);
        w.add(&trade(3, "98", "1", 119_500), &mut candles, &mut late);
        assert_eq!(candles.len(), 2);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].trade.seq, 3);
    }

    #[test]
    fn a_first_trade_after_the_end_emits_at_once() {
        let (mut w, mut candles, mut late) = (minute(5_000), vec![], vec![]);
        w.advance(121_000, &mut candles);
        w.add(&trade(1, "100", "1", 119_000), &mut candles, &mut late);
        assert_eq!(candles.len(), 1);
        assert_eq!(candles[0].version, 1);
        w.advance(i64::MAX, &mut candles);
        assert_eq!(candles.len(), 1, "not emitted twice");
    }

    #[test]
    fn a_restored_partition_emits_what_the_original_would() {
        let stream = [
            (1, "100", "1", 60_500),
            (2, "101", "2", 61_000),
            (3, "99", "1", 119_000),
            (4, "102", "5", 130_000),
            (5, "98", "1", 118_000),
            (6, "97", "1", 100_000),
        ];
        let marks = [0, 118_000, 121_000, 124_000, 126_000, 200_000];
        for cut in 0..=stream.len() {
            let (mut a, mut b) = (minute(5_000), minute(5_000));
            let (mut ca, mut la, mut cb, mut lb) = (vec![], vec![], vec![], vec![]);
            for (i, (seq, p, q, ts)) in stream.iter().enumerate() {
                if i == cut {
                    b.restore(a.snapshot(), |_| true).unwrap();
                    ca.clear();
                    la.clear();
                }
                a.advance(marks[i], &mut ca);
                a.add(&trade(*seq, p, q, *ts), &mut ca, &mut la);
                if i >= cut {
                    b.advance(marks[i], &mut cb);
                    b.add(&trade(*seq, p, q, *ts), &mut cb, &mut lb);
                }
            }
            if cut == stream.len() {
                b.restore(a.snapshot(), |_| true).unwrap();
                ca.clear();
                la.clear();
            }
            a.advance(i64::MAX, &mut ca);
            b.advance(i64::MAX, &mut cb);
            assert_eq!((ca, la), (cb, lb), "restored after {cut} trades");
        }
    }

    #[test]
    fn a_restore_refuses_an_interval_the_spec_lacks() {
        let (mut w, mut candles, mut late) = (minute(0), vec![], vec![]);
        w.add(&trade(1, "100", "1", 60_500), &mut candles, &mut late);
        let mut hourly = Windows::new(CandleSpec {
            intervals: vec!["1h".parse().unwrap()],
            lateness: 0,
        });
        assert!(hourly.restore(w.snapshot(), |_| true).is_err());
        assert!(hourly.restore(w.snapshot(), |_| false).is_ok());
    }

    #[test]
    fn ties_open_on_the_first_arrival_and_close_on_the_last() {
        let (mut w, mut candles, mut late) = (minute(0), vec![], vec![]);
        w.add(&trade(1, "10", "1", 60_000), &mut candles, &mut late);
        w.add(&trade(2, "11", "1", 60_000), &mut candles, &mut late);
        w.add(&trade(3, "9", "1", 60_000), &mut candles, &mut late);
        w.advance(i64::MAX, &mut candles);
        assert_eq!(
            (candles[0].open, candles[0].close),
            (Fixed::units(10), Fixed::units(9))
        );
    }
}
