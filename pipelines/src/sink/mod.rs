//! Sinks: where records go. Each worker writes through its own handle, so
//! serialization runs in parallel; a sink's shared part (files, clients)
//! sits behind bounded queues so a slow destination slows the source.

pub mod clickhouse;
pub mod columnar;
pub mod dir;
pub mod kafka;
mod queue;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use operators::dataflow::Record;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpointer;

/// A destination, shared by the workers of a process.
pub trait Sink: Send + Sync {
    /// A handle for one worker.
    fn handle(&self, worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>>;
    /// Finishes writing once every handle is gone.
    fn close(&self) -> anyhow::Result<()>;
    /// How it is doing, for `/metrics` and `/readyz`.
    fn health(&self) -> &Health;
}

/// How a sink is doing, kept by its writers.
#[derive(Debug, Default)]
pub struct Health {
    /// Rows the destination has taken.
    pub rows: AtomicU64,
    /// Writes tried again after a transient error.
    pub retries: AtomicU64,
    /// Chunks, batches or (Kafka) records waiting for the sink's writers.
    pub queued: AtomicU64,
    /// The error being retried (cleared by the next success), or the one
    /// that stopped the sink.
    error: Mutex<Option<String>>,
    /// Whether `error` holds one being retried: a write clears it, and
    /// only then takes the lock (the Kafka sink reports every record).
    retrying: AtomicBool,
}

impl Health {
    pub fn wrote(&self, rows: usize) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        if self.retrying.swap(false, Ordering::Relaxed) {
            if let Ok(mut error) = self.error.lock() {
                error.take();
            }
        }
    }

    pub fn retrying(&self, error: &anyhow::Error) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(format!("{error:#}"));
        }
        self.retrying.store(true, Ordering::Relaxed);
    }

    pub fn failed(&self, error: &anyhow::Error) {
        self.retrying.store(false, Ordering::Relaxed);
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(format!("{error:#}"));
        }
    }

    /// The current error: `None` while the sink is writing.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok()?.clone()
    }
}

/// One worker's way into a sink.
pub trait SinkHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()>;
    /// Called after each step of the worker's sink operator: hands over
    /// what is due (a sink that batches further keeps rows no longer than
    /// its flush period) and reports failures.
    fn flush(&mut self) -> anyhow::Result<()>;
    /// Everything written so far belongs to checkpoint `id`, and nothing
    /// after: the sink makes it durable and, once every worker's share is,
    /// says so through its [`Commits`].
    fn barrier(&mut self, id: u64) -> anyhow::Result<()>;
    /// The input has ended: hands over whatever the handle still holds
    /// beyond what [`flush`](Self::flush) hands over.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Offsets of one topic partition, as ranges `[from, to)`:
/// (topic, partition, ranges).
pub type OffsetRanges = (String, i32, Vec<(i64, i64)>);

/// What a sink had made durable at a checkpoint: what a restart puts it
/// back to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkState {
    /// A `dir:` sink: each JSONL file's length, in `OUTPUTS` order, and the
    /// Parquet parts up to this checkpoint's id are committed.
    Dir { lengths: Vec<u64> },
    /// Every row up to the checkpoint was delivered; rows emitted again
    /// after a restart are collapsed by the destination's keys.
    Delivered,
    /// A Kafka sink: every record up to the checkpoint was acknowledged;
    /// every record after it lies at or after these (topic, partition,
    /// offset) starts, or at the `pending` offset ranges (records a run
    /// killed earlier wrote ahead of this checkpoint), where a restart
    /// looks for what it already wrote.
    Kafka {
        starts: Vec<(String, i32, i64)>,
        #[serde(default)]
        pending: Vec<OffsetRanges>,
    },
}

impl SinkState {
    /// One sink's state from its parties' (in party order): lengths side
    /// by side; the earliest start per partition, and the records pending
    /// for every party (each reports what it has not yet re-emitted before
    /// its barrier, so the last to arrive reports the fewest).
    fn merge(parts: Vec<SinkState>) -> anyhow::Result<SinkState> {
        let mut lengths = Vec::new();
        let mut starts: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut pending: Option<BTreeSet<(String, i32, i64)>> = None;
        let mut delivered = false;
        for part in parts {
            match part {
                SinkState::Dir { lengths: l } => lengths.extend(l),
                SinkState::Delivered => delivered = true,
                SinkState::Kafka {
                    starts: s,
                    pending: p,
                } => {
                    for (topic, partition, offset) in s {
                        let start = starts.entry((topic, partition)).or_insert(offset);
                        *start = (*start).min(offset);
                    }
                    let p: BTreeSet<_> = offsets(p).collect();
                    pending = Some(match pending {
                        None => p,
                        Some(before) => before.intersection(&p).cloned().collect(),
                    });
                }
            }
        }
        Ok(match (lengths.is_empty(), delivered) {
            (false, false) => SinkState::Dir { lengths },
            (true, true) => SinkState::Delivered,
            (true, false) => SinkState::Kafka {
                starts: starts.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
                pending: ranges(pending.unwrap_or_default()),
            },
            (false, true) => bail!("one sink's parties reported different kinds of state"),
        })
    }
}

/// The offsets in per-partition ranges `[from, to)`.
pub fn offsets(ranges: Vec<OffsetRanges>) -> impl Iterator<Item = (String, i32, i64)> {
    ranges.into_iter().flat_map(|(topic, partition, ranges)| {
        ranges
            .into_iter()
            .flat_map(|(from, to)| from..to)
            .map(move |o| (topic.clone(), partition, o))
    })
}

/// Offsets as per-partition ranges `[from, to)`, the inverse of [`offsets`].
pub fn ranges(offsets: impl IntoIterator<Item = (String, i32, i64)>) -> Vec<OffsetRanges> {
    let mut sorted: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for (topic, partition, offset) in offsets {
        sorted.entry((topic, partition)).or_default().push(offset);
    }
    sorted
        .into_iter()
        .map(|((topic, partition), mut list)| {
            list.sort_unstable();
            list.dedup();
            let mut ranges: Vec<(i64, i64)> = Vec::new();
            for offset in list {
                match ranges.last_mut() {
                    Some((_, to)) if *to == offset => *to += 1,
                    _ => ranges.push((offset, offset + 1)),
                }
            }
            (topic, partition, ranges)
        })
        .collect()
}

/// A sink's way to the checkpointer: collects the parties of a checkpoint
/// (its workers, or its output files) and reports the sink committed once
/// the last has made its share durable.
pub struct Commits {
    checkpointer: Arc<Checkpointer>,
    /// The sink's place among `--sink` flags.
    index: usize,
    parties: usize,
    /// Per checkpoint, what each party that arrived reported.
    arrived: Mutex<BTreeMap<u64, BTreeMap<usize, SinkState>>>,
}

impl Commits {
    fn new(checkpointer: &Arc<Checkpointer>, index: usize, parties: usize) -> Arc<Commits> {
        Arc::new(Commits {
            checkpointer: Arc::clone(checkpointer),
            index,
            parties,
            arrived: Mutex::default(),
        })
    }

    /// `party` has made its share of checkpoint `id` durable, `state` being
    /// what a restart needs of that share.
    pub fn arrive(&self, id: u64, party: usize, state: SinkState) -> anyhow::Result<()> {
        let mut arrived = self
            .arrived
            .lock()
            .map_err(|_| anyhow::anyhow!("checkpoint commits poisoned"))?;
        let parties = arrived.entry(id).or_default();
        parties.insert(party, state);
        if parties.len() == self.parties {
            let parts = arrived
                .remove(&id)
                .unwrap_or_default()
                .into_values()
                .collect();
            self.checkpointer
                .committed(id, self.index, SinkState::merge(parts)?);
        }
        Ok(())
    }
}

/// What a sink handle may know of its worker.
pub struct WorkerInfo {
    /// The worker's index across all processes.
    pub index: usize,
    /// The lowest watermark of the worker's open source partitions, kept
    /// current by the worker; `None` while it has none.
    pub watermark: Rc<Cell<Option<i64>>>,
}

/// Settings the sinks of a run share.
pub struct SinkSettings<'a> {
    pub process: usize,
    /// Worker threads of this process: each takes a handle.
    pub workers: usize,
    /// Where sinks report checkpoints, when the run takes them.
    pub checkpointer: Option<&'a Arc<Checkpointer>>,
    /// The checkpoint the run resumes from, and each sink's state in it.
    pub restore: Option<(u64, &'a [SinkState])>,
    /// librdkafka settings for Kafka sinks.
    pub kafka_options: &'a [(String, String)],
    /// Whether a ClickHouse sink creates its database and tables if missing.
    pub create_tables: bool,
}

/// A parsed `--sink`: checked when the flags are read, before anything
/// starts, and opened by [`open`].
#[derive(Clone, Debug)]
pub struct SinkSpec {
    /// As given: what checkpoints compare.
    pub text: String,
    pub kind: SinkKind,
}

#[derive(Clone, Debug)]
pub enum SinkKind {
    Dir(std::path::PathBuf),
    Kafka(kafka::Topics),
    ClickHouse(clickhouse::ClickHouseAddress),
}

impl SinkKind {
    /// `dir`, `kafka` or `clickhouse`: safe to show (no credentials).
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Dir(_) => "dir",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::ClickHouse(_) => "clickhouse",
        }
    }
}

impl SinkSpec {
    pub fn parse(text: &str) -> anyhow::Result<SinkSpec> {
        let kind = match text.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => SinkKind::Dir(path.into()),
            Some(("kafka", _)) => SinkKind::Kafka(kafka::Topics::parse(text)?),
            Some(("clickhouse", _)) => {
                SinkKind::ClickHouse(clickhouse::ClickHouseAddress::parse(text)?)
            }
            _ => bail!(
                "expected `dir:PATH`, `kafka://HOST:PORT` or `clickhouse://HOST:PORT/DATABASE`, not `{text}`"
            ),
        };
        Ok(SinkSpec {
            text: text.to_string(),
            kind,
        })
    }
}

/// Opens the sinks of `--sink` flags.
pub fn open(specs: &[SinkSpec], settings: &SinkSettings) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let restore = settings
                .restore
                .and_then(|(id, states)| states.get(index).map(|state| (id, state)));
            let commits = |parties| {
                settings
                    .checkpointer
                    .map(|c| Commits::new(c, index, parties))
            };
            Ok(match &spec.kind {
                SinkKind::Dir(path) => Arc::new(dir::DirSink::create(
                    path,
                    settings.process,
                    settings.workers,
                    restore,
                    commits(operators::output::OUTPUTS.len()),
                )?) as Arc<dyn Sink>,
                SinkKind::Kafka(topics) => Arc::new(kafka::KafkaSink::create(
                    topics,
                    settings.kafka_options,
                    commits(settings.workers),
                    restore,
                )?),
                SinkKind::ClickHouse(address) => Arc::new(clickhouse::ClickHouseSink::create(
                    address,
                    settings.process,
                    settings.create_tables,
                    commits(settings.workers),
                )?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_ranges_are_inverses() {
        let t = |o| ("t".to_string(), 0, o);
        let list = vec![t(5), t(3), t(4), t(9), ("u".to_string(), 2, 1)];
        let ranges = ranges(list.clone());
        assert_eq!(
            ranges,
            vec![
                ("t".to_string(), 0, vec![(3, 6), (9, 10)]),
                ("u".to_string(), 2, vec![(1, 2)])
            ]
        );
        let mut back: Vec<_> = offsets(ranges).collect();
        let mut list = list;
        back.sort();
        list.sort();
        assert_eq!(back, list);
    }

    #[test]
    fn a_kafka_sinks_state_keeps_the_earliest_starts_and_what_every_worker_still_has_pending() {
        let worker = |start, pending: Vec<(i64, i64)>| SinkState::Kafka {
            starts: vec![("t".to_string(), 0, start)],
            pending: vec![("t".to_string(), 0, pending)],
        };
        let merged = SinkState::merge(vec![worker(40, vec![(3, 9)]), worker(30, vec![(5, 12)])]);
        assert_eq!(
            merged.unwrap(),
            SinkState::Kafka {
                starts: vec![("t".to_string(), 0, 30)],
                pending: vec![("t".to_string(), 0, vec![(5, 9)])],
            }
        );
    }
}
