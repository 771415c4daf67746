//! Sources: where order messages come from, one reader per partition.
//!
//! Each partition is owned by exactly one timely worker, which reads it in
//! order and stamps each message with the partition's watermark.

pub mod file;
pub mod gen;
pub mod kafka;

use anyhow::bail;
use operators::dataflow::PartitionMark;
use operators::partition::{PartitionReader, Sequenced};

use crate::cli::GenFlags;
use crate::kafka::KafkaAddress;
use crate::progress::Counters;
use kafka::KafkaRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Messages were appended.
    Ready,
    /// Nothing now; maybe later.
    Idle,
    /// Nothing due yet under `--rate`: paced, not idle.
    Held,
    /// The partition has ended (a bounded source).
    Ended,
}

/// One partition, read in order.
pub trait PartitionSource {
    /// Appends up to `max` messages to `out`.
    fn poll(&mut self, max: usize, out: &mut Vec<Sequenced>) -> anyhow::Result<Poll>;
    fn reader(&mut self) -> &mut PartitionReader;
    /// Where reading resumes after everything polled so far: the next
    /// message's offset, and (for a file) the byte it starts at.
    fn position(&self) -> (u64, u64);
    /// Where the next message stands in the whole input, for `--rate`:
    /// the generator's global message index, a file's line.
    fn pace_position(&self) -> u64 {
        self.position().0
    }
    /// Everything before `next_offset` has been through the dataflow: a
    /// source that reports progress elsewhere (a consumer group) may say so.
    fn processed(&mut self, _next_offset: u64) {}
    /// The run is over and everything read was processed.
    fn close(&mut self) {}
    /// Messages the partition holds beyond those read, where the source
    /// knows without asking anyone (Kafka's consumer lag).
    fn lag(&self) -> Option<i64> {
        None
    }
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

    /// What a checkpoint must agree on about the source: which messages
    /// come, in which partitions and order.
    pub fn fingerprint(&self) -> String {
        match self {
            SourceSpec::Gen(f) => format!(
                "gen orders={} symbols={} hot-share={} seed={} partitions={}",
                f.orders, f.symbols, f.hot_share, f.seed, f.partitions
            ),
            SourceSpec::File(path) => format!(
                "file:{}",
                path.as_ref()
                    .map_or("-".into(), |p| p.display().to_string())
            ),
            SourceSpec::Kafka(source) => source.fingerprint(),
        }
    }

    /// The partitions worker `index` of `peers` owns, each positioned after
    /// its mark in `resume` (a checkpoint's), or at its start.
    pub fn open(
        &self,
        index: usize,
        peers: usize,
        out_of_orderness: i64,
        counters: &Arc<Counters>,
        resume: &[PartitionMark],
    ) -> anyhow::Result<Vec<Box<dyn PartitionSource>>> {
        let mark = |p: u32| resume.iter().find(|m| m.partition == p);
        let mut sources = match self {
            SourceSpec::Gen(flags) => {
                let spec = flags.spec()?;
                (0..spec.partitions)
                    .filter(|p| *p as usize % peers == index)
                    .map(|p| {
                        let mut partition =
                            gen::GenPartition::new(spec.clone(), p, out_of_orderness);
                        partition.skip_to(mark(p).map_or(0, |m| m.next_offset));
                        Box::new(partition) as Box<dyn PartitionSource>
                    })
                    .collect()
            }
            // A file is one partition: worker 0 reads it.
            SourceSpec::File(path) if index == 0 => vec![Box::new(file::FilePartition::open(
                path.as_deref(),
                out_of_orderness,
                Arc::clone(counters),
                mark(0).map_or((0, 0), |m| (m.next_offset, m.next_byte)),
            )?)
                as Box<dyn PartitionSource>],
            SourceSpec::File(_) => Vec::new(),
            // Seeked already: a resumed run starts at the checkpoint's offsets.
            SourceSpec::Kafka(source) => source.open(index, peers, out_of_orderness)?,
        };
        for source in &mut sources {
            let reader = source.reader();
            if let Some(mark) = mark(reader.partition()) {
                reader.restore(mark.state);
            }
        }
        Ok(sources)
    }
}

/// Milliseconds since the Unix epoch by the wall clock (the event time of
/// a message without `ts`, `--start-time now`, watermark lag).
pub fn now_ms() -> i64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch by the wall clock.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

const REST_MIN: Duration = Duration::from_micros(20);
const REST_MAX: Duration = Duration::from_millis(5);

/// Reading paced to `--rate`: the message at position `p` of the whole
/// input (see [`PartitionSource::pace_position`]) is due `p / rate`
/// seconds after the run started, so every partition keeps its natural
/// share of the flow.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub rate: f64,
    pub started: Instant,
}

impl Pace {
    /// The position below which messages are due, for a partition that
    /// started at `start`.
    pub fn due(&self, start: u64) -> u64 {
        start + (self.started.elapsed().as_secs_f64() * self.rate) as u64
    }

    /// When the message at `position` of a source that started at `start`
    /// falls due.
    pub fn due_at(&self, start: u64, position: u64) -> Instant {
        self.started + Duration::from_secs_f64(position.saturating_sub(start) as f64 / self.rate)
    }

    /// Polls `source` (which started at `start`) one message at a time
    /// while its messages are due, up to `max` in `out`.
    pub fn poll(
        &self,
        start: u64,
        source: &mut dyn PartitionSource,
        max: usize,
        out: &mut Vec<Sequenced>,
    ) -> anyhow::Result<Poll> {
        let due = self.due(start);
        let mut polled = Poll::Held;
        while out.len() < max && source.pace_position() < due {
            polled = source.poll(1, out)?;
            if polled != Poll::Ready {
                break;
            }
        }
        Ok(if out.is_empty() { polled } else { Poll::Ready })
    }

    /// Waits until the message at `position` is due: `orderflow gen --rate`.
    pub fn wait(&self, position: u64) {
        while self.due(0) <= position {
            std::thread::sleep(self.rest());
        }
    }

    /// How long a worker with nothing due rests: about until its next
    /// message is due, but not so briefly that it spins.
    pub fn rest(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate).clamp(REST_MIN, REST_MAX)
    }
}
