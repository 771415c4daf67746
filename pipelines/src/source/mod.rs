//! Sources: where order messages come from, one reader per partition.
//!
//! Each partition is owned by exactly one timely worker, which reads it in
//! order and stamps each message with the partition's watermark.

pub mod file;
pub mod gen;
pub mod kafka;

use anyhow::bail;
use operators::partition::{PartitionReader, Sequenced};

use crate::cli::GenFlags;
use crate::kafka::KafkaAddress;
use crate::progress::Counters;
use kafka::KafkaRead;
use std::sync::Arc;

/// What a poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Messages were appended.
    Ready,
    /// Nothing now; maybe later.
    Idle,
    /// The partition has ended (a bounded source).
    Ended,
}

/// One partition, read in order.
pub trait PartitionSource {
    /// Appends up to `max` messages to `out`.
    fn poll(&mut self, max: usize, out: &mut Vec<Sequenced>) -> anyhow::Result<Poll>;
    fn reader(&mut self) -> &mut PartitionReader;
    /// Everything before `next_offset` has been through the dataflow: a
    /// source that reports progress elsewhere (a consumer group) may say so.
    fn processed(&mut self, _next_offset: u64) {}
    /// The run is over and everything read was processed.
    fn close(&mut self) {}
}

/// A parsed `--source`.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    Gen(GenFlags),
    /// `None` reads stdin.
    File(Option<std::path::PathBuf>),
    Kafka(Arc<kafka::KafkaSource>),
}

impl SourceSpec {
    pub fn parse(text: &str, gen: &GenFlags, read: KafkaRead) -> anyhow::Result<SourceSpec> {
        match text.split_once(':') {
            Some(("kafka", _)) => {
                let address = KafkaAddress::parse(text)?;
                Ok(SourceSpec::Kafka(Arc::new(kafka::KafkaSource::resolve(
                    address, read,
                )?)))
            }
            None if text == "gen" => {
                gen.spec()?;
                Ok(SourceSpec::Gen(gen.clone()))
            }
            Some(("file", "-")) => Ok(SourceSpec::File(None)),
            Some(("file", path)) if !path.is_empty() => {
                let path = std::path::PathBuf::from(path);
                if !path.is_file() {
                    bail!("--source {text}: no such file");
                }
                Ok(SourceSpec::File(Some(path)))
            }
            _ => bail!(
                "--source must be `gen`, `file:PATH`, `file:-` or `kafka://HOST:PORT/TOPIC`, not `{text}`"
            ),
        }
    }

    /// How much input this process reads, for the progress bar: (messages,
    /// bytes). `workers` are this process's worker indices among `peers`.
    pub fn size(
        &self,
        workers: std::ops::Range<usize>,
        peers: usize,
    ) -> (Option<u64>, Option<u64>) {
        match self {
            SourceSpec::Kafka(source) => (source.size(workers, peers), None),
            SourceSpec::Gen(flags) => ((flags.orders > 0).then_some(flags.orders), None),
            SourceSpec::File(path) => (
                None,
                path.as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len()),
            ),
        }
    }

    /// The partitions worker `index` of `peers` owns.
    pub fn open(
        &self,
        index: usize,
        peers: usize,
        out_of_orderness: i64,
        counters: &Arc<Counters>,
    ) -> anyhow::Result<Vec<Box<dyn PartitionSource>>> {
        Ok(match self {
            SourceSpec::Gen(flags) => {
                let spec = flags.spec()?;
                (0..spec.partitions)
                    .filter(|p| *p as usize % peers == index)
                    .map(|p| {
                        Box::new(gen::GenPartition::new(spec.clone(), p, out_of_orderness))
                            as Box<dyn PartitionSource>
                    })
                    .collect()
            }
            // A file is one partition: worker 0 reads it.
            SourceSpec::File(path) if index == 0 => vec![Box::new(file::FilePartition::open(
                path.as_deref(),
                out_of_orderness,
                Arc::clone(counters),
            )?)],
            SourceSpec::File(_) => Vec::new(),
            SourceSpec::Kafka(source) => source.open(index, peers, out_of_orderness)?,
        })
    }
}

/// Milliseconds since the Unix epoch: the event time of a message without `ts`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
