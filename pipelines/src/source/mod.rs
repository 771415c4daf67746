//! Sources: where order messages come from, one reader per partition.
//!
//! Each partition is owned by exactly one timely worker, which reads it in
//! order and stamps each message with the partition's watermark.

pub mod file;
pub mod gen;

use anyhow::bail;
use operators::partition::{PartitionReader, Sequenced};

use crate::cli::GenFlags;
use crate::progress::Counters;
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
}

/// A parsed `--source`.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    Gen(GenFlags),
    /// `None` reads stdin.
    File(Option<std::path::PathBuf>),
}

impl SourceSpec {
    pub fn parse(text: &str, gen: &GenFlags) -> anyhow::Result<SourceSpec> {
        match text.split_once(':') {
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
            _ => bail!("--source must be `gen`, `file:PATH` or `file:-`, not `{text}`"),
        }
    }

    /// How much input there is, for the progress bar: (messages, bytes).
    pub fn size(&self) -> (Option<u64>, Option<u64>) {
        match self {
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
        })
    }
}

/// Milliseconds since the Unix epoch: the event time of a message without `ts`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
