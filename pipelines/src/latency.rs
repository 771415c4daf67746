//! Latency from the moment a message is there to be read to the moment the
//! records derived from it reach the sink writers, as an HdrHistogram per
//! worker merged into the run's every second (for `/metrics`) and at the
//! end (for the summary). A paced source's message is there when it falls
//! due, so the time it waits for its batch counts; any other source's
//! batch counts from its hand-over to the dataflow.
//!
//! Timely times are batch numbers, so the moment a batch's first message
//! was there is kept per time: the sink operator looks up the time of each
//! chunk of records it takes. A time handed over by several workers keeps
//! the earliest moment, so a figure is never lower than the truth.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use operators::dataflow::Time;

/// Microseconds up to an hour, three significant digits.
const HIGHEST_US: u64 = 3_600_000_000;
/// How often a worker's figures join the run's.
const MERGE_EVERY: Duration = Duration::from_secs(1);
/// Times kept after their hand-over: far more than can be in flight
/// (workers run at most a few batches ahead of the sinks).
const KEPT: usize = 4096;

pub struct Latency {
    started: Instant,
    /// Microseconds after `started` at which each recent time was handed over.
    handed: Mutex<BTreeMap<Time, u64>>,
    merged: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            started: Instant::now(),
            handed: Mutex::default(),
            merged: Mutex::new(histogram()),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")
}

impl Latency {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// A source handed over messages at `time`, the first of which was
    /// there to be read at `since`.
    pub fn handed(&self, time: Time, since: Instant) {
        let since = since.saturating_duration_since(self.started).as_micros() as u64;
        if let Ok(mut handed) = self.handed.lock() {
            let first = handed.entry(time).or_insert(since);
            *first = since.min(*first);
            while handed.len() > KEPT {
                handed.pop_first();
            }
        }
    }

    /// A worker's histogram, fed by its sink operator.
    pub fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder {
            latency: Arc::clone(self),
            histogram: histogram(),
            merged: Instant::now(),
        }
    }

    /// `latency p50 X ms · p99 Y ms · max Z ms`, or `None` when nothing
    /// was measured.
    pub fn summary(&self) -> Option<String> {
        let merged = self.merged.lock().ok()?;
        if merged.is_empty() {
            return None;
        }
        let ms = |us: u64| Duration::from_micros(us).as_secs_f64() * 1e3;
        Some(format!(
            "latency p50 {:.3} ms · p99 {:.3} ms · max {:.3} ms",
            ms(merged.value_at_quantile(0.5)),
            ms(merged.value_at_quantile(0.99)),
            ms(merged.max()),
        ))
    }

    /// The run's figures so far as a Prometheus histogram in seconds: the
    /// sum, the count, and the count in each bucket up to its bound (the
    /// last bound `f64::MAX`, Prometheus's `+Inf`).
    pub fn buckets(&self, bounds: &[f64]) -> (f64, u64, Vec<(f64, u64)>) {
        let Ok(merged) = self.merged.lock() else {
            return (0.0, 0, Vec::new());
        };
        let mut buckets = Vec::with_capacity(bounds.len() + 1);
        let mut below = 0;
        for &bound in bounds {
            let upto = merged.count_between(0, (bound * 1e6) as u64);
            buckets.push((bound, upto - below));
            below = upto;
        }
        buckets.push((f64::MAX, merged.len() - below));
        let sum = merged
            .iter_recorded()
            .map(|v| v.value_iterated_to() as f64 / 1e6 * v.count_at_value() as f64)
            .sum();
        (sum, merged.len(), buckets)
    }
}

/// One worker's latencies, merged into the run's when dropped.
pub struct Recorder {
    latency: Arc<Latency>,
    histogram: Histogram<u64>,
    /// When its figures last joined the run's.
    merged: Instant,
}

impl Recorder {
    /// `records` of batch `time` reached the sink writers now.
    pub fn reached(&mut self, time: Time, records: usize) {
        let handed = match self.latency.handed.lock() {
            Ok(handed) => handed.get(&time).copied(),
            Err(_) => None,
        };
        if let Some(handed) = handed {
            let us = self.latency.now_us().saturating_sub(handed).max(1);
            self.histogram.saturating_record_n(us, records as u64);
        }
        if self.merged.elapsed() >= MERGE_EVERY {
            self.merge();
        }
    }

    fn merge(&mut self) {
        if let Ok(mut merged) = self.latency.merged.lock() {
            let _ = merged.add(&self.histogram);
        }
        self.histogram.reset();
        self.merged = Instant::now();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.merge();
    }
}
