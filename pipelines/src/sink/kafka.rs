//! `kafka://HOST:PORT[?prefix=P&partitions=N]`: every output to its own
//! topic (`P` + `events`, `trades`, `bbo`, `candles`, `late`), keyed by
//! symbol, as the same JSON a `dir:` sink writes per line.
//!
//! One idempotent producer per process, shared by its workers. Its queue is
//! bounded: when the broker falls behind, `write` waits, which holds the
//! worker and so the source. A record the broker never acknowledges fails
//! the run rather than vanishing.
//!
//! With checkpoints, each record carries the checkpoint it belongs to in an
//! `orderflow-epoch` header. At a barrier the sink records, per output
//! partition, the acknowledged end: everything this run writes later lands
//! after it. A restart from checkpoint K reads from there, takes the
//! records of later epochs as already written, and skips each once when
//! the run emits it again (identically). No broker transactions are
//! needed, so this holds on any broker.
//!
//! Checkpoint ids are not unique across restarts (a run killed before
//! committing K + 1 leaves records of epoch K + 1, and so will the next).
//! So a restart also records, at each barrier, which records of runs
//! before it it has not yet emitted again: they lie before its starts but
//! belong after the checkpoint, and the checkpoint names them (`pending`).
//! The producer counts the topics' ends at start as acknowledged, so every
//! start lies past what earlier runs wrote.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use operators::dataflow::Record;
use operators::output::OUTPUTS;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use super::{Commits, Health, OffsetRanges, Sink, SinkHandle, SinkState, WorkerInfo};
use crate::kafka::{ensure_topic, KafkaAddress, Producer};
use crate::source::kafka::{read_range, StartAt};

const EPOCH: &str = "orderflow-epoch";

/// A record as the sink sends it: output, key, value.
type Sent = (usize, Option<String>, Vec<u8>);

/// Records already on the topics that the run will emit again: where each
/// copy lies, and which copies the run has emitted again (skipped).
#[derive(Default)]
struct Written {
    state: Mutex<WrittenState>,
    /// Copies not yet emitted again: the fast path once none are.
    left: AtomicUsize,
}

#[derive(Default)]
struct WrittenState {
    copies: Vec<Copy>,
    /// The copies of each record not yet emitted again.
    untaken: HashMap<Sent, Vec<usize>>,
}

struct Copy {
    output: usize,
    partition: i32,
    offset: i64,
    /// The epoch of the handle that emitted this record again.
    taken: Option<u64>,
}

impl Written {
    fn new(records: Vec<(Sent, i32, i64)>) -> Written {
        let mut state = WrittenState::default();
        for (sent, partition, offset) in records {
            state
                .untaken
                .entry(sent.clone())
                .or_default()
                .push(state.copies.len());
            state.copies.push(Copy {
                output: sent.0,
                partition,
                offset,
                taken: None,
            });
        }
        Written {
            left: AtomicUsize::new(state.copies.len()),
            state: Mutex::new(state),
        }
    }

    /// Whether this record was written already (and is now accounted for,
    /// as emitted again in `epoch`).
    fn take(&self, output: usize, key: Option<&str>, value: &[u8], epoch: u64) -> bool {
        if self.left.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let entry = (output, key.map(str::to_string), value.to_vec());
        let Some(copies) = state.untaken.get_mut(&entry) else {
            return false;
        };
        let Some(copy) = copies.pop() else {
            return false;
        };
        if copies.is_empty() {
            state.untaken.remove(&entry);
        }
        state.copies[copy].taken = Some(epoch);
        self.left.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// The copies that belong after checkpoint `id`: not emitted again, or
    /// emitted again after it.
    fn pending(&self, id: u64, topics: &[String; OUTPUTS.len()]) -> Vec<(String, i32, i64)> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .copies
            .iter()
            .filter(|c| c.taken.is_none_or(|epoch| epoch > id))
            .map(|c| (topics[c.output].clone(), c.partition, c.offset))
            .collect()
    }
}

/// Partitions of an output topic the sink has to create.
const DEFAULT_PARTITIONS: u32 = 8;

/// A Kafka sink's address and topics, from `kafka://HOST:PORT[?prefix=P&partitions=N]`.
#[derive(Clone, Debug)]
pub struct Topics {
    address: KafkaAddress,
    /// Each output's topic: the prefix and the output's name.
    names: [String; OUTPUTS.len()],
    /// Partitions of each topic the sink creates.
    partitions: u32,
}

impl Topics {
    pub fn parse(text: &str) -> anyhow::Result<Topics> {
        let address = KafkaAddress::parse(text)?;
        if address.topic.is_some() {
            bail!("a Kafka sink writes five topics: give kafka://HOST:PORT[?prefix=P], without a topic");
        }
        let mut prefix = "";
        let mut partitions = DEFAULT_PARTITIONS;
        for (key, value) in &address.params {
            match key.as_str() {
                "prefix" => prefix = value,
                "partitions" => {
                    partitions = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .with_context(|| format!("partitions={value}: expected a count ≥ 1"))?
                }
                other => bail!("Kafka sink: unknown setting `{other}` (prefix, partitions)"),
            }
        }
        let names = OUTPUTS.map(|output| format!("{prefix}{}", output.name));
        Ok(Topics {
            address,
            names,
            partitions,
        })
    }
}

pub struct KafkaSink {
    producer: Producer,
    topics: [String; OUTPUTS.len()],
    commits: Option<Arc<Commits>>,
    /// The checkpoint records now belong to (after the one resumed from).
    epoch: u64,
    written: Arc<Written>,
}

impl KafkaSink {
    /// Creates missing output topics, then the producer.
    pub fn create(
        spec: &Topics,
        options: &[(String, String)],
        commits: Option<Arc<Commits>>,
        restore: Option<(u64, &SinkState)>,
    ) -> anyhow::Result<KafkaSink> {
        let (address, topics) = (&spec.address, spec.names.clone());
        for topic in &topics {
            ensure_topic(address, options, topic, spec.partitions)?;
        }
        // Read before anything else: nothing this run writes can precede.
        let ends = crate::kafka::ends(address, options, &topics)?;
        let written = match restore {
            None => Written::default(),
            Some((id, SinkState::Kafka { starts, pending })) => {
                written_after(address, options, &topics, id, starts, pending)?
            }
            Some((_, other)) => bail!("the checkpoint holds {other:?} for a Kafka sink"),
        };
        let producer = Producer::create(address, options)?;
        producer.start_at(ends);
        Ok(KafkaSink {
            producer,
            topics,
            commits,
            epoch: restore.map_or(1, |(id, _)| id + 1),
            written: Arc::new(written),
        })
    }
}

/// What the sink wrote after checkpoint `id`: the records of later epochs
/// from each output partition's recorded start (the whole partition where
/// none was recorded) to its end now, and the pending records of runs
/// before.
fn written_after(
    address: &KafkaAddress,
    options: &[(String, String)],
    topics: &[String; OUTPUTS.len()],
    id: u64,
    starts: &[(String, i32, i64)],
    pending: &[OffsetRanges],
) -> anyhow::Result<Written> {
    let pending: HashSet<(String, i32, i64)> = super::offsets(pending.to_vec()).collect();
    let mut records = Vec::new();
    for (output, topic) in topics.iter().enumerate() {
        let start = |partition: i32| {
            starts
                .iter()
                .find(|(t, p, _)| t == topic && *p == partition)
                .map(|(_, _, o)| *o)
        };
        let mut from: HashMap<i32, i64> = HashMap::new();
        for (t, p, o) in starts.iter().chain(pending.iter()) {
            if t == topic {
                let f = from.entry(*p).or_insert(*o);
                *f = (*f).min(*o);
            }
        }
        read_range(
            address,
            options,
            topic,
            StartAt::Offsets(from.into_iter().collect()),
            |_| true,
            |record| {
                let (partition, offset) = (record.partition(), record.offset());
                let later = || {
                    let epoch = record.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == EPOCH)
                            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
                    });
                    start(partition).is_none_or(|s| offset >= s) && epoch.is_some_and(|e| e > id)
                };
                if pending.contains(&(topic.clone(), partition, offset)) || later() {
                    let key = record
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned());
                    let value = record.payload().unwrap_or_default().to_vec();
                    records.push(((output, key, value), partition, offset));
                }
                Ok(())
            },
        )
        .with_context(|| format!("reading what {topic} holds after checkpoint {id}"))?;
    }
    tracing::info!(
        "Kafka sink: {} records written after checkpoint {id} will not be sent again",
        records.len()
    );
    Ok(Written::new(records))
}

impl Sink for KafkaSink {
    fn handle(&self, worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>> {
        Ok(Box::new(KafkaHandle {
            producer: self.producer.clone(),
            topics: self.topics.clone(),
            value: Vec::with_capacity(512),
            worker: worker.index,
            commits: self.commits.clone(),
            epoch: self.epoch,
            written: Arc::clone(&self.written),
        }))
    }

    fn close(&self) -> anyhow::Result<()> {
        self.producer.finish()
    }

    fn health(&self) -> &Health {
        self.producer.health()
    }
}

struct KafkaHandle {
    producer: Producer,
    topics: [String; OUTPUTS.len()],
    value: Vec<u8>,
    worker: usize,
    commits: Option<Arc<Commits>>,
    epoch: u64,
    written: Arc<Written>,
}

impl SinkHandle for KafkaHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        self.value.clear();
        operators::json::write(record, &mut self.value);
        let output = record.output();
        if self
            .written
            .take(output, record.symbol(), &self.value, self.epoch)
        {
            return Ok(());
        }
        let headers = self.commits.as_ref().map(|_| {
            OwnedHeaders::new().insert(Header {
                key: EPOCH,
                value: Some(self.epoch.to_string().as_bytes()),
            })
        });
        let topic = &self.topics[output];
        self.producer
            .send(topic, None, record.symbol(), None, headers, &self.value)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        // librdkafka sends on its own schedule (linger.ms); surface failures.
        self.producer.report_queued();
        self.producer.check()
    }

    /// Waits until the broker has acknowledged every record sent so far
    /// (the producer is the process's: other workers' records too).
    fn barrier(&mut self, id: u64) -> anyhow::Result<()> {
        self.producer.finish()?;
        // Every later record of this worker lands after these ends.
        let starts = self.producer.ends();
        let pending = super::ranges(self.written.pending(id, &self.topics));
        self.epoch = id + 1;
        match &self.commits {
            Some(commits) => commits.arrive(id, self.worker, SinkState::Kafka { starts, pending }),
            None => Err(anyhow!("a barrier without checkpoints")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_before_the_restart_is_skipped_as_often_as_it_is_there() {
        let a = |offset| ((1, Some("A".to_string()), b"x".to_vec()), 0, offset);
        let written = Written::new(vec![a(10), a(11)]);
        assert!(!written.take(0, Some("A"), b"x", 5), "another output");
        assert!(!written.take(1, Some("B"), b"x", 5), "another key");
        assert!(written.take(1, Some("A"), b"x", 5));
        assert!(written.take(1, Some("A"), b"x", 5));
        assert!(
            !written.take(1, Some("A"), b"x", 5),
            "both copies accounted for"
        );
        assert_eq!(written.left.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn records_not_yet_emitted_again_at_a_barrier_stay_pending_for_its_checkpoint() {
        let topics = OUTPUTS.map(|output| output.name.to_string());
        let record = |value: &str, offset| ((2, Some("A".to_string()), value.into()), 1, offset);
        let written = Written::new(vec![record("x", 7), record("y", 8), record("z", 9)]);
        // Emitted again in epoch 4 (before barrier 4) and 5 (after it).
        assert!(written.take(2, Some("A"), b"x", 4));
        assert!(written.take(2, Some("A"), b"y", 5));
        let at = |id| -> Vec<i64> {
            written
                .pending(id, &topics)
                .into_iter()
                .map(|(_, _, o)| o)
                .collect()
        };
        assert_eq!(at(3), [7, 8, 9]);
        assert_eq!(at(4), [8, 9]);
        assert_eq!(at(5), [9]);
    }
}
