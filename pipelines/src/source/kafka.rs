//! `kafka://HOST:PORT/TOPIC`: every partition of the topic owned by exactly
//! one timely worker across all processes.
//!
//! Ownership is computed from the sorted partition list (`i % peers`), not
//! left to consumer-group rebalancing, so a partition's books and watermark
//! stay on one worker for the whole run. Each worker runs one consumer with
//! `assign` and reads each of its partitions from its own queue, in offset
//! order. The source's own offsets are the truth; the consumer group only
//! receives asynchronous commits of what has been through the dataflow, for
//! lag monitoring, and nothing waits on them.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use operators::order::Rejected;
use operators::partition::{PartitionReader, Sequenced};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{now_ms, PartitionSource, Poll};
use crate::kafka::{self, Client, Connection, KafkaAddress, REQUEST_TIMEOUT};

/// Where a run starts reading each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    /// The consumer group's committed offsets; the earliest where none.
    Committed,
    /// The first record whose timestamp is at or after this (ms).
    Timestamp(i64),
    /// Explicit `partition=offset` pairs; unlisted partitions start earliest.
    Offsets(Vec<(i32, i64)>),
}

/// Where a bounded run stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopAt {
    /// The end offsets at start-up.
    Latest,
    /// Before the first record whose timestamp is at or after this (ms); a
    /// partition with none ends once it is caught up and the clock has passed it.
    Timestamp(i64),
    /// Before these `partition=offset` pairs; unlisted partitions end at the
    /// end offsets at start-up.
    Offsets(Vec<(i32, i64)>),
}

/// `P=O,…` pairs of partition and offset.
fn offsets(list: &str) -> Result<Vec<(i32, i64)>, String> {
    list.split(',')
        .map(|pair| {
            pair.split_once('=')
                .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
                .filter(|(p, o): &(i32, i64)| *p >= 0 && *o >= 0)
                .ok_or_else(|| format!("`{pair}`: expected PARTITION=OFFSET"))
        })
        .collect()
}

fn timestamp(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| format!("`{text}`: expected milliseconds since the Unix epoch"))
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.split_once(':') {
            None if text == "earliest" => StartAt::Earliest,
            None if text == "latest" => StartAt::Latest,
            None if text == "committed" => StartAt::Committed,
            Some(("timestamp", ms)) => StartAt::Timestamp(timestamp(ms)?),
            Some(("offsets", list)) => StartAt::Offsets(offsets(list)?),
            _ => {
                return Err(format!(
                    "`{text}`: expected earliest, latest, committed, timestamp:MS or offsets:P=O,…"
                ))
            }
        })
    }
}

impl FromStr for StopAt {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "latest" => Ok(StopAt::Latest),
            Some(("timestamp", ms)) => Ok(StopAt::Timestamp(timestamp(ms)?)),
            Some(("offsets", list)) => Ok(StopAt::Offsets(offsets(list)?)),
            _ => Err(format!(
                "`{text}`: expected latest, timestamp:MS or offsets:P=O,…"
            )),
        }
    }
}

/// How the Kafka source is asked to read.
#[derive(Clone, Debug)]
pub struct KafkaRead {
    pub options: Vec<(String, String)>,
    pub start: StartAt,
    pub stop: Option<StopAt>,
    /// Consumer group: librdkafka needs one to assign partitions; it is
    /// where `committed` offsets come from and where commits go.
    pub group: String,
    pub commit: bool,
}

/// One partition's range, fixed once per process at start-up so that every
/// worker agrees on it and progress can be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    pub partition: i32,
    pub start: i64,
    /// The offset to stop before, when known.
    pub end: Option<i64>,
}

#[derive(Debug)]
pub struct KafkaSource {
    address: KafkaAddress,
    topic: String,
    read: KafkaRead,
    pub plan: Vec<PartitionPlan>,
}

impl KafkaSource {
    /// Looks up the topic's partitions and resolves start and stop offsets.
    pub fn resolve(address: KafkaAddress, read: KafkaRead) -> anyhow::Result<KafkaSource> {
        let topic = address.topic()?.to_string();
        let consumer = consumer(&address, &read, false)?;
        let plan = plan(&consumer, &topic, &read)
            .with_context(|| format!("reading topic {topic} on {}", address.brokers))?;
        Ok(KafkaSource {
            address,
            topic,
            read,
            plan,
        })
    }

    /// The offsets read, per partition, for a summary: `P: START..END`.
    pub fn ranges(&self) -> String {
        self.plan
            .iter()
            .map(|p| match p.end {
                Some(end) => format!("{}: {}..{end}", p.partition, p.start),
                None => format!("{}: {}..", p.partition, p.start),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where each partition starts, as `(partition, offset)`.
    pub fn starts(&self) -> Vec<(i32, i64)> {
        self.plan.iter().map(|p| (p.partition, p.start)).collect()
    }

    /// The topic and its partition count: what a checkpoint's offsets mean.
    pub fn fingerprint(&self) -> String {
        format!("kafka topic={} partitions={}", self.topic, self.plan.len())
    }

    /// The partitions worker `index` of `peers` owns.
    pub fn owned(&self, index: usize, peers: usize) -> impl Iterator<Item = &PartitionPlan> {
        self.plan
            .iter()
            .enumerate()
            .filter(move |(i, _)| i % peers == index)
            .map(|(_, p)| p)
    }

    /// Messages to read by `workers` (of `peers`), when every end is known.
    pub fn size(&self, workers: std::ops::Range<usize>, peers: usize) -> Option<u64> {
        workers
            .flat_map(|w| self.owned(w, peers))
            .map(|p| p.end.map(|end| (end - p.start).max(0) as u64))
            .sum()
    }

    /// One consumer for worker `index`, with a reader per owned partition.
    pub fn open(
        &self,
        index: usize,
        peers: usize,
        out_of_orderness: i64,
    ) -> anyhow::Result<Vec<Box<dyn PartitionSource>>> {
        let owned: Vec<&PartitionPlan> = self.owned(index, peers).collect();
        if owned.is_empty() {
            return Ok(Vec::new());
        }
        let consumer = Arc::new(consumer(&self.address, &self.read, true)?);
        let mut assignment = TopicPartitionList::new();
        for p in &owned {
            assignment.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.start))?;
        }
        consumer.assign(&assignment)?;
        let mut queues = Vec::new();
        for p in &owned {
            let queue = consumer
                .split_partition_queue(&self.topic, p.partition)
                .ok_or_else(|| anyhow!("no queue for partition {}", p.partition))?;
            queues.push(queue);
        }
        // Records fetched between `assign` and the splits went to the main
        // queue; they precede everything on the partition queues.
        let mut early: Vec<VecDeque<OwnedMessage>> =
            owned.iter().map(|_| VecDeque::new()).collect();
        while let Some(message) = consumer.poll(Duration::ZERO) {
            let message = message.context("reading Kafka")?;
            let slot = owned
                .iter()
                .position(|p| p.partition == message.partition())
                .ok_or_else(|| {
                    anyhow!("a record from unassigned partition {}", message.partition())
                })?;
            early[slot].push_back(message.detach());
        }
        let skip_before = match self.read.start {
            StartAt::Timestamp(ms) => Some(ms),
            _ => None,
        };
        let stop_ts = match self.read.stop {
            Some(StopAt::Timestamp(ms)) => Some(ms),
            _ => None,
        };
        Ok(owned
            .into_iter()
            .zip(queues)
            .zip(early)
            .map(|((p, queue), early)| {
                Box::new(KafkaPartition {
                    consumer: Arc::clone(&consumer),
                    queue,
                    early,
                    topic: self.topic.clone(),
                    commits: self.read.commit,
                    committed: p.start,
                    last_commit: Instant::now(),
                    last_end_check: None,
                    position: Position {
                        reader: PartitionReader::new(p.partition as u32, out_of_orderness),
                        next: p.start,
                        end: p.end,
                        stop_ts,
                        skip_before,
                        stopped: false,
                    },
                }) as Box<dyn PartitionSource>
            })
            .collect())
    }
}

/// The source's consumer; `stats` for one that reads for the whole run
/// (its partitions' ends then come with the statistics, for the lag).
fn consumer(address: &KafkaAddress, read: &KafkaRead, stats: bool) -> anyhow::Result<Client> {
    let defaults = [
        ("group.id", read.group.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
        // An offset that no longer exists is an error, never a silent jump.
        ("auto.offset.reset", "error"),
        ("statistics.interval.ms", if stats { "1000" } else { "0" }),
    ];
    address.client(&defaults, &read.options)
}

/// Each partition's start and (with `--stop latest`) end offsets.
pub fn plan(
    consumer: &Client,
    topic: &str,
    read: &KafkaRead,
) -> anyhow::Result<Vec<PartitionPlan>> {
    let ids = kafka::existing_partitions(consumer, topic)?;
    let marks = ids
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, *p, REQUEST_TIMEOUT)
                .with_context(|| format!("reading the offsets of partition {p}"))
        })
        .collect::<anyhow::Result<Vec<(i64, i64)>>>()?;
    let looked_up = |found: TopicPartitionList| -> anyhow::Result<Vec<Option<i64>>> {
        ids.iter()
            .map(
                |p| match found.find_partition(topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Ok(Some(o)),
                    Some(Offset::End) => Ok(Some(i64::MAX)),
                    _ => Ok(None),
                },
            )
            .collect()
    };
    let query = |offset: Offset| -> anyhow::Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for p in &ids {
            list.add_partition_offset(topic, *p, offset)?;
        }
        Ok(list)
    };
    let starts: Vec<i64> = match &read.start {
        StartAt::Earliest => marks.iter().map(|(low, _)| *low).collect(),
        StartAt::Latest => marks.iter().map(|(_, high)| *high).collect(),
        StartAt::Timestamp(ms) => {
            let found = consumer
                .offsets_for_times(query(Offset::Offset(*ms))?, REQUEST_TIMEOUT)
                .context("looking up offsets by timestamp")?;
            // No record at or after the time: start at the end.
            looked_up(found)?
                .into_iter()
                .zip(&marks)
                .map(|(o, (low, high))| o.unwrap_or(*high).clamp(*low, *high))
                .collect()
        }
        StartAt::Committed => {
            let found = consumer
                .committed_offsets(query(Offset::Invalid)?, REQUEST_TIMEOUT)
                .context("reading the group's committed offsets")?;
            looked_up(found)?
                .into_iter()
                .zip(&marks)
                .map(|(o, (low, high))| o.unwrap_or(*low).clamp(*low, *high))
                .collect()
        }
        StartAt::Offsets(given) => {
            for (p, _) in given {
                if !ids.contains(p) {
                    bail!("--start offsets: topic {topic} has no partition {p}");
                }
            }
            ids.iter()
                .zip(&marks)
                .map(
                    |(p, (low, high))| match given.iter().find(|(q, _)| q == p) {
                        Some((_, o)) if (*low..=*high).contains(o) => Ok(*o),
                        Some((_, o)) => bail!(
                            "--start offsets: partition {p} holds offsets {low}..{high}, not {o}"
                        ),
                        None => Ok(*low),
                    },
                )
                .collect::<anyhow::Result<_>>()?
        }
    };
    Ok(ids
        .iter()
        .zip(starts)
        .zip(&marks)
        .map(|((p, start), (_, high))| PartitionPlan {
            partition: *p,
            start,
            end: match &read.stop {
                Some(StopAt::Latest) => Some((*high).max(start)),
                Some(StopAt::Offsets(given)) => Some(
                    given
                        .iter()
                        .find(|(q, _)| q == p)
                        .map_or(*high, |(_, o)| *o)
                        .max(start),
                ),
                Some(StopAt::Timestamp(_)) | None => None,
            },
        })
        .collect())
}

/// Whether the consumer's position in `partition` has reached `end`.
fn caught_up(consumer: &Client, topic: &str, partition: i32, end: i64) -> bool {
    // The list is dropped here, before the consumer can be: a live one
    // would make the consumer's drop block.
    let position = consumer
        .position()
        .ok()
        .and_then(|list| list.find_partition(topic, partition).map(|e| e.offset()));
    matches!(position, Some(Offset::Offset(o)) if o >= end)
}

/// Reads the records of `topic` from `start` up to the end offsets of the
/// moment, handing those whose record timestamp is `within` to `each`, in
/// offset order per partition; returns how many it handed over. A bounded
/// read for queries and for a sink's look at what it wrote: no commits, no
/// watermarks.
pub fn read_range(
    address: &KafkaAddress,
    options: &[(String, String)],
    topic: &str,
    start: StartAt,
    within: impl Fn(Option<i64>) -> bool,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let read = KafkaRead {
        options: options.to_vec(),
        start,
        stop: Some(StopAt::Latest),
        group: "orderflow-sql".to_string(),
        commit: false,
    };
    let consumer = consumer(address, &read, false)?;
    let mut left: Vec<PartitionPlan> = plan(&consumer, topic, &read)?
        .into_iter()
        .filter(|p| p.end.is_some_and(|end| end > p.start))
        .collect();
    let mut assignment = TopicPartitionList::new();
    for p in &left {
        assignment.add_partition_offset(topic, p.partition, Offset::Offset(p.start))?;
    }
    consumer.assign(&assignment)?;
    let mut handed = 0;
    let mut progress = Instant::now();
    while !left.is_empty() {
        let Some(record) = consumer.poll(Duration::from_millis(100)) else {
            // Quiet: partitions whose last offsets are transaction markers
            // are done once the position has passed them.
            left.retain(|p| {
                !p.end
                    .is_some_and(|end| caught_up(&consumer, topic, p.partition, end))
            });
            if progress.elapsed() > REQUEST_TIMEOUT {
                bail!(
                    "reading {topic}: no record for {} s",
                    REQUEST_TIMEOUT.as_secs()
                );
            }
            continue;
        };
        progress = Instant::now();
        let record = record.with_context(|| format!("reading {topic}"))?;
        let Some(slot) = left.iter().position(|p| p.partition == record.partition()) else {
            continue;
        };
        if within(record.timestamp().to_millis()) {
            each(&record)?;
            handed += 1;
        }
        if left[slot].end.is_some_and(|end| record.offset() + 1 >= end) {
            left.swap_remove(slot);
        }
    }
    Ok(handed)
}

/// Offsets between commits to the group, which are for monitoring only.
const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// How often an idle partition past its stop time asks for its end offset.
const END_CHECK_EVERY: Duration = Duration::from_secs(1);

struct KafkaPartition {
    consumer: Arc<Client>,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<Connection>,
    early: VecDeque<OwnedMessage>,
    topic: String,
    commits: bool,
    committed: i64,
    last_commit: Instant,
    last_end_check: Option<Instant>,
    position: Position,
}

/// The partition's own bookkeeping: what was read and where it ends.
struct Position {
    reader: PartitionReader,
    /// The offset after the last record taken (or skipped).
    next: i64,
    end: Option<i64>,
    stop_ts: Option<i64>,
    /// Start at a timestamp: records before it that the look-up still
    /// returned are passed over until the first one at or after it.
    skip_before: Option<i64>,
    stopped: bool,
}

impl Position {
    fn ended(&self) -> bool {
        self.stopped || self.end.is_some_and(|end| self.next >= end)
    }

    /// Reads one record into `out`, unless the run stops before it.
    fn take(&mut self, record: &impl Message, out: &mut Vec<Sequenced>) {
        let offset = record.offset();
        let record_ts = record.timestamp().to_millis();
        if self.end.is_some_and(|end| offset >= end)
            || self
                .stop_ts
                .is_some_and(|stop| record_ts.is_some_and(|ts| ts >= stop))
        {
            self.stopped = true;
            return;
        }
        if let Some(from) = self.skip_before {
            if record_ts.is_some_and(|ts| ts < from) {
                self.next = offset + 1;
                return;
            }
            self.skip_before = None;
        }
        self.next = offset + 1;
        let fallback = record_ts.unwrap_or_else(now_ms);
        let at = offset as u64;
        out.push(match record.payload().map(std::str::from_utf8) {
            Some(Ok(text)) => self.reader.read(text, at, fallback),
            // Not UTF-8, or no payload at all.
            _ => {
                let lossy = String::from_utf8_lossy(record.payload().unwrap_or_default());
                let malformed = Rejected::malformed(lossy.into_owned(), fallback);
                self.reader.place(Err(malformed), at)
            }
        });
    }
}

impl KafkaPartition {
    /// An idle partition may have ended without a record saying so: its
    /// last offsets can be transaction markers, which are never delivered
    /// (the consumer's position moves past them), and with a stop time that
    /// has passed, being caught up means nothing more can come.
    fn check_end(&mut self) -> anyhow::Result<()> {
        let partition = self.position.reader.partition() as i32;
        if let Some(end) = self.position.end {
            if caught_up(&self.consumer, &self.topic, partition, end) {
                self.position.next = self.position.next.max(end);
            }
        }
        if let Some(stop) = self.position.stop_ts {
            if now_ms() >= stop {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
                    .with_context(|| format!("reading the end of partition {partition}"))?;
                // Our own position first: the consumer's is unknown in a
                // partition that never had a record.
                if self.position.next >= high
                    || caught_up(&self.consumer, &self.topic, partition, high)
                {
                    self.position.stopped = true;
                }
            }
        }
        Ok(())
    }

    /// Serves the consumer's events (errors, commit results).
    fn serve(&self) -> anyhow::Result<()> {
        match self.consumer.poll(Duration::ZERO) {
            Some(Ok(record)) => bail!(
                "a record of partition {} arrived outside its queue",
                record.partition()
            ),
            Some(Err(e)) => tracing::warn!("Kafka: {e}"),
            None => {}
        }
        Ok(())
    }

    fn commit(&mut self, next_offset: i64) {
        let mut list = TopicPartitionList::new();
        let partition = self.position.reader.partition() as i32;
        if list
            .add_partition_offset(&self.topic, partition, Offset::Offset(next_offset))
            .is_ok()
        {
            if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
                tracing::warn!("committing offsets to the consumer group (for lag only): {e}");
            }
        }
        self.committed = next_offset;
        self.last_commit = Instant::now();
    }
}

impl PartitionSource for KafkaPartition {
    fn poll(&mut self, max: usize, out: &mut Vec<Sequenced>) -> anyhow::Result<Poll> {
        self.serve()?;
        let start = out.len();
        while out.len() - start < max && !self.position.ended() {
            if let Some(record) = self.early.pop_front() {
                self.position.take(&record, out);
                continue;
            }
            match self.queue.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => bail!(
                    "reading partition {} of {}: {e}",
                    self.position.reader.partition(),
                    self.topic
                ),
                Some(Ok(record)) => self.position.take(&record, out),
            }
        }
        if out.len() > start {
            return Ok(Poll::Ready);
        }
        // Asked of the client at most once a second, and only when idle.
        if self
            .last_end_check
            .is_none_or(|t| t.elapsed() >= END_CHECK_EVERY)
        {
            self.last_end_check = Some(Instant::now());
            self.check_end()?;
        }
        Ok(if self.position.ended() {
            Poll::Ended
        } else {
            Poll::Idle
        })
    }

    fn reader(&mut self) -> &mut PartitionReader {
        &mut self.position.reader
    }

    fn position(&self) -> (u64, u64) {
        (self.position.next.max(0) as u64, 0)
    }

    fn processed(&mut self, next_offset: u64) {
        let next_offset = next_offset as i64;
        if self.commits
            && next_offset > self.committed
            && self.last_commit.elapsed() >= COMMIT_EVERY
        {
            self.commit(next_offset);
        }
    }

    /// From the end in the consumer's last statistics: no request.
    fn lag(&self) -> Option<i64> {
        let partition = self.position.reader.partition() as i32;
        let end = self.consumer.context().end(partition)?;
        Some((end - self.position.next).max(0))
    }

    fn close(&mut self) {
        // Asynchronous too: librdkafka sends it before the consumer closes,
        // and logs a failure itself.
        if self.commits && self.position.next > self.committed {
            self.commit(self.position.next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_stop_positions_parse() {
        assert_eq!("earliest".parse(), Ok(StartAt::Earliest));
        assert_eq!(
            "timestamp:1700000000000".parse(),
            Ok(StartAt::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            "offsets:0=5,3=10".parse(),
            Ok(StartAt::Offsets(vec![(0, 5), (3, 10)]))
        );
        assert_eq!("latest".parse(), Ok(StopAt::Latest));
        assert_eq!("timestamp:5".parse(), Ok(StopAt::Timestamp(5)));
        for bad in [
            "",
            "first",
            "timestamp:",
            "timestamp:-1",
            "offsets:0",
            "offsets:a=1",
            "offsets:0=-2",
        ] {
            assert!(bad.parse::<StartAt>().is_err(), "{bad}");
        }
        assert!("committed".parse::<StopAt>().is_err());
    }
}
