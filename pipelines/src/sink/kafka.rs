//! `kafka://HOST:PORT[?prefix=P&partitions=N]`: every output to its own
//! topic (`P` + `events`, `trades`, `bbo`, `candles`, `late`), keyed by
//! symbol, as the same JSON a `dir:` sink writes per line.
//!
//! One idempotent producer per process, shared by its workers. Its queue is
//! bounded: when the broker falls behind, `write` waits, which holds the
//! worker and so the source. A record the broker never acknowledges fails
//! the run rather than vanishing.

use anyhow::{bail, Context};
use operators::dataflow::{Record, OUTPUTS};

use std::sync::Arc;

use super::{Commits, Sink, SinkHandle, SinkState, WorkerInfo};
use crate::kafka::{ensure_topic, KafkaAddress, Producer};

/// Partitions of an output topic the sink has to create.
const DEFAULT_PARTITIONS: u32 = 8;

pub struct KafkaSink {
    producer: Producer,
    topics: [String; 5],
    commits: Option<Arc<Commits>>,
}

impl KafkaSink {
    /// Creates missing output topics, then the producer.
    pub fn create(
        address: &KafkaAddress,
        options: &[(String, String)],
        commits: Option<Arc<Commits>>,
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
        Ok(KafkaSink {
            producer: Producer::create(address, options)?,
            topics,
            commits,
        })
    }
}

impl Sink for KafkaSink {
    fn handle(&self, worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>> {
        Ok(Box::new(KafkaHandle {
            producer: self.producer.clone(),
            topics: self.topics.clone(),
            value: Vec::with_capacity(512),
            worker: worker.index,
            commits: self.commits.clone(),
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
}

impl SinkHandle for KafkaHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        self.value.clear();
        serde_json::to_writer(&mut self.value, record)?;
        let topic = &self.topics[record.output()];
        self.producer
            .send(topic, None, record.symbol(), None, &self.value)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        // librdkafka sends on its own schedule (linger.ms); surface failures.
        self.producer.check()
    }

    /// Waits until the broker has acknowledged every record sent so far
    /// (the producer is the process's: other workers' records too).
    fn barrier(&mut self, id: u64) -> anyhow::Result<()> {
        self.producer.finish()?;
        if let Some(commits) = &self.commits {
            commits.arrive(id, self.worker, 0, |_| SinkState::Delivered);
        }
        Ok(())
    }
}
