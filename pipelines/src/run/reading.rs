//! A worker's source loop: its partitions, read in batches into the
//! dataflow, each batch followed by the partition's mark (position and
//! watermark), so that a checkpoint knows where every partition stands.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use operators::dataflow::{Control, PartitionMark, Time};
use operators::partition::Sequenced;
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::latency::Latency;
use crate::serve::PartitionState;
use crate::source::{Pace, PartitionSource, Poll};

/// How often a worker tells `/metrics` where its partitions stand.
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// How long after a partition's last batch a batch that is not full goes:
/// every batch costs the dataflow the same progress tracking and
/// hand-overs (some 50–100 µs of the cores), so a partition read as soon as a
/// message is there (a paced or quiet input) would spend the cores on
/// batches of one message. A full batch goes at once, so a busy input's
/// batches are as big as `--batch` allows and a quiet one's as big as its
/// rate fills in this time: a tenth of a millisecond of latency.
const GATHER: Duration = Duration::from_micros(100);

/// The partitions one worker owns, and where each stands.
pub struct Reading {
    sources: Vec<Box<dyn PartitionSource>>,
    batch: Vec<Sequenced>,
    batch_size: usize,
    /// The watermark each partition's last mark carried.
    sent_marks: Vec<i64>,
    last_data: Vec<Instant>,
    /// The last tick each partition waits through once it has nothing more
    /// to give now (its batch was not full, or paced, nothing is due): the
    /// tick it was read in, and under a pace the ticks of a rest after.
    gathering: Vec<Option<Time>>,
    /// The ticks of a rest after the one a partition was read in: under a
    /// slow pace, whose next message is far off, it waits them too.
    rest: Time,
    open: Vec<bool>,
    /// (time, source, offset after the batch) for batches still in the
    /// dataflow.
    in_flight: VecDeque<(Time, usize, u64)>,
    idle_timeout: i64,
    /// A replay: its partitions end where its range does, not where their
    /// input does, so their end does not close the windows.
    replay: bool,
    pub pace: Option<Pace>,
    /// Each source's pace position when the run started.
    starts: Vec<u64>,
    latency: Arc<Latency>,
    reported: Option<Instant>,
    started: Instant,
}

impl Reading {
    pub fn new(
        sources: Vec<Box<dyn PartitionSource>>,
        batch_size: usize,
        idle_timeout: i64,
        replay: bool,
        pace: Option<Pace>,
        started: Instant,
        latency: Arc<Latency>,
    ) -> Reading {
        let count = sources.len();
        let rest = pace.as_ref().map_or(Duration::ZERO, Pace::rest);
        let rest = (rest.as_micros() / GATHER.as_micros()).saturating_sub(1) as Time;
        let starts = sources.iter().map(|s| s.pace_position()).collect();
        Reading {
            sources,
            batch: Vec::with_capacity(batch_size),
            batch_size,
            sent_marks: vec![i64::MIN; count],
            last_data: vec![Instant::now(); count],
            gathering: vec![None; count],
            rest,
            open: vec![true; count],
            in_flight: VecDeque::new(),
            idle_timeout,
            replay,
            pace,
            starts,
            latency,
            reported: None,
            started,
        }
    }

    /// Whether any partition may still have messages.
    pub fn open(&self) -> bool {
        self.open.iter().any(|o| *o)
    }

    /// Reads a batch from every open partition into `orders` at `time`,
    /// and marks each partition that moved on `control`. Whether anything
    /// was sent; a source's error stops the round.
    pub fn poll(
        &mut self,
        time: Time,
        orders: &mut InputHandleVec<Time, Sequenced>,
        control: &mut InputHandleVec<Time, Control>,
    ) -> anyhow::Result<bool> {
        let mut progressed = false;
        let tick = self.clock();
        let wait = tick + self.rest;
        for (i, source) in self.sources.iter_mut().enumerate() {
            if !self.open[i] || self.gathering[i].is_some_and(|at| at >= tick) {
                continue;
            }
            let first = source.pace_position();
            let polled = match &self.pace {
                None => source.poll(self.batch_size, &mut self.batch)?,
                Some(pace) => pace.poll(
                    self.starts[i],
                    source.as_mut(),
                    self.batch_size,
                    &mut self.batch,
                )?,
            };
            let ready = polled == Poll::Ready;
            match polled {
                Poll::Ready => {
                    let now = Instant::now();
                    self.last_data[i] = now;
                    self.gathering[i] = (self.batch.len() < self.batch_size).then_some(wait);
                    self.in_flight.push_back((time, i, source.position().0));
                    let since = self
                        .pace
                        .as_ref()
                        .map_or(now, |pace| pace.due_at(self.starts[i], first));
                    orders.send_batch(&mut self.batch);
                    self.latency.handed(time, since);
                    self.batch.clear();
                    progressed = true;
                }
                // A worker that looked again every few microseconds, between
                // ticks, spent the cores on steps.
                Poll::Held => self.gathering[i] = Some(wait),
                Poll::Idle => {
                    let idle = self.last_data[i].elapsed().as_millis() as i64;
                    source.reader().idle(idle, self.idle_timeout);
                }
                Poll::Ended => self.open[i] = false,
            }
            let watermark = match self.open[i] {
                true => source.reader().watermark(),
                // The end of a bounded input closes its windows; the end
                // of a replayed range does not: the input goes on.
                false if !self.replay => i64::MAX,
                false => source.reader().watermark(),
            };
            // Every batch is marked, so that a checkpoint knows where each
            // partition stands.
            if ready || watermark != self.sent_marks[i] {
                self.sent_marks[i] = watermark;
                let (next_offset, next_byte) = source.position();
                let reader = source.reader();
                control.send(Control::Mark(PartitionMark {
                    partition: reader.partition(),
                    watermark,
                    next_offset,
                    next_byte,
                    state: reader.state(),
                }));
                progressed = true;
            }
        }
        Ok(progressed)
    }

    /// The time the clock has reached, in [`GATHER`]s since the run
    /// started: a worker's batch is at least this late, and a quiet
    /// partition cuts one batch per tick, so batches that workers cut at
    /// the same moment carry the same time and complete together.
    pub fn clock(&self) -> Time {
        (self.started.elapsed().as_micros() / GATHER.as_micros()) as Time
    }

    /// How long until the first tick at which a partition is read again,
    /// while every open partition waits: the worker has nothing to read
    /// before then.
    pub fn gathered_in(&self) -> Option<Duration> {
        let tick = self.clock();
        let mut next = Time::MAX;
        for (open, at) in self.open.iter().zip(&self.gathering) {
            if *open {
                next = next.min(at.filter(|&at| at >= tick)? + 1);
            }
        }
        let next = Duration::from_micros(next.saturating_mul(GATHER.as_micros() as u64));
        Some(next.saturating_sub(self.started.elapsed()))
    }

    /// The lowest watermark of the open partitions that have one.
    pub fn watermark(&self) -> Option<i64> {
        (0..self.sources.len())
            .filter(|&i| self.open[i] && self.sent_marks[i] != i64::MIN)
            .map(|i| self.sent_marks[i])
            .min()
    }

    /// Puts each partition's watermark, idleness and lag into `into`,
    /// at most every [`REPORT_EVERY`].
    pub fn report(&mut self, into: &Mutex<BTreeMap<u32, PartitionState>>) {
        if self.reported.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            return;
        }
        self.reported = Some(Instant::now());
        let Ok(mut states) = into.lock() else {
            return;
        };
        for (i, source) in self.sources.iter_mut().enumerate() {
            let lag = source.lag();
            let idle = !self.open[i]
                || self.last_data[i].elapsed().as_millis() as i64 >= self.idle_timeout;
            states.insert(
                source.reader().partition(),
                PartitionState {
                    watermark: self.sent_marks[i],
                    idle,
                    lag,
                },
            );
        }
    }

    /// Tells each source how far the dataflow has processed its batches.
    pub fn processed(&mut self, probe: &ProbeHandle<Time>) {
        while let Some(&(at, i, next)) = self.in_flight.front() {
            if probe.less_equal(&at) {
                break;
            }
            self.sources[i].processed(next);
            self.in_flight.pop_front();
        }
    }

    /// The run is over and everything read was processed.
    pub fn close(&mut self) {
        for source in self.sources.iter_mut() {
            source.close();
        }
    }
}
