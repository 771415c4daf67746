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
//! `orderflow-epoch` header. A restart from checkpoint K reads what the
//! sink wrote after K (from the offsets K recorded, before which nothing
//! later can lie) and does not send those records again: the run emits them
//! identically, so every one is found and skipped once. No broker
//! transactions are needed, so this holds on any broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use operators::dataflow::{Record, OUTPUTS};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use super::{Commits, Sink, SinkHandle, SinkState, WorkerInfo};
use crate::kafka::{ensure_topic, KafkaAddress, Producer};
use crate::source::kafka::{read_range, StartAt};

const EPOCH: &str = "orderflow-epoch";

/// A record as the sink sends it: output, key, value.
type Sent = (usize, Option<String>, Vec<u8>);

/// Records already on the topics that the run will emit again, with how
/// many times each is there.
#[derive(Default)]
struct Written {
    records: Mutex<HashMap<Sent, usize>>,
    left: AtomicUsize,
}

impl Written {
    /// Whether this record was written already (and is now accounted for).
    fn take(&self, output: usize, key: Option<&str>, value: &[u8]) -> bool {
        if self.left.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Ok(mut records) = self.records.lock() else {
            return false;
        };
        let entry = (output, key.map(str::to_string), value.to_vec());
        match records.get_mut(&entry) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    records.remove(&entry);
                }
                self.left.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Partitions of an output topic the sink has to create.
const DEFAULT_PARTITIONS: u32 = 8;

pub struct KafkaSink {
    producer: Producer,
    topics: [String; 5],
    commits: Option<Arc<Commits>>,
    /// The checkpoint records now belong to (after the one resumed from).
    epoch: u64,
    written: Arc<Written>,
}

impl KafkaSink {
    /// Creates missing output topics, then the producer.
    pub fn create(
        address: &KafkaAddress,
        options: &[(String, String)],
        commits: Option<Arc<Commits>>,
        restore: Option<(u64, &SinkState)>,
    ) -> anyhow::Result<KafkaSink> {
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
        let topics = OUTPUTS.map(|output| format!("{prefix}{output}"));
        for topic in &topics {
            ensure_topic(address, options, topic, partitions)?;
        }
        let written = match restore {
            None => Written::default(),
            Some((id, SinkState::Kafka { starts })) => {
                written_after(address, options, &topics, id, starts)?
            }
            Some((_, other)) => bail!("the checkpoint holds {other:?} for a Kafka sink"),
        };
        Ok(KafkaSink {
            producer: Producer::create(address, options)?,
            topics,
            commits,
            epoch: restore.map_or(1, |(id, _)| id + 1),
            written: Arc::new(written),
        })
    }
}

/// What the sink wrote after checkpoint `id`: the records of later epochs
/// from each output partition's recorded start (the whole partition where
/// none was recorded) to its end now.
fn written_after(
    address: &KafkaAddress,
    options: &[(String, String)],
    topics: &[String; 5],
    id: u64,
    starts: &[(String, i32, i64)],
) -> anyhow::Result<Written> {
    let mut records: HashMap<_, usize> = HashMap::new();
    let mut left = 0;
    for (output, topic) in topics.iter().enumerate() {
        let from = starts
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, p, o)| (*p, *o))
            .collect();
        read_range(
            address,
            options,
            topic,
            StartAt::Offsets(from),
            |_| true,
            |record| {
                let epoch = record.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == EPOCH)
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
                });
                if epoch.is_some_and(|e| e > id) {
                    let key = record
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned());
                    let value = record.payload().unwrap_or_default().to_vec();
                    *records.entry((output, key, value)).or_default() += 1;
                    left += 1;
                }
                Ok(())
            },
        )
        .with_context(|| format!("reading what {topic} holds after checkpoint {id}"))?;
    }
    tracing::info!(
        "Kafka sink: {left} records written after checkpoint {id} will not be sent again"
    );
    Ok(Written {
        records: Mutex::new(records),
        left: AtomicUsize::new(left),
    })
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
}

struct KafkaHandle {
    producer: Producer,
    topics: [String; 5],
    value: Vec<u8>,
    worker: usize,
    commits: Option<Arc<Commits>>,
    epoch: u64,
    written: Arc<Written>,
}

impl SinkHandle for KafkaHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        self.value.clear();
        serde_json::to_writer(&mut self.value, record)?;
        let output = record.output();
        if self.written.take(output, record.symbol(), &self.value) {
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
        self.producer.check()
    }

    /// Waits until the broker has acknowledged every record sent so far
    /// (the producer is the process's: other workers' records too).
    fn barrier(&mut self, id: u64) -> anyhow::Result<()> {
        self.producer.finish()?;
        // Every later record of this worker lands after these ends.
        let starts = self.producer.ends();
        self.epoch = id + 1;
        match &self.commits {
            Some(commits) => commits.arrive(id, self.worker, SinkState::Kafka { starts }),
            None => Err(anyhow!("a barrier without checkpoints")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_before_the_restart_is_skipped_as_often_as_it_is_there() {
        let mut records = HashMap::new();
        records.insert((1, Some("A".to_string()), b"x".to_vec()), 2);
        let written = Written {
            records: Mutex::new(records),
            left: AtomicUsize::new(2),
        };
        assert!(!written.take(0, Some("A"), b"x"), "another output");
        assert!(!written.take(1, Some("B"), b"x"), "another key");
        assert!(written.take(1, Some("A"), b"x"));
        assert!(written.take(1, Some("A"), b"x"));
        assert!(
            !written.take(1, Some("A"), b"x"),
            "both copies accounted for"
        );
        assert_eq!(written.left.load(Ordering::Relaxed), 0);
    }
}
