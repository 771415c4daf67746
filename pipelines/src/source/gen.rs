//! The built-in generator, as a source and as `orderflow gen`.

use std::io::Write;

use anyhow::{bail, Context};
use operators::gen::{symbol_name, GenSpec, Generator, Next};
use operators::partition::{PartitionReader, Sequenced};

use super::{Pace, PartitionSource, Poll};
use crate::cli::GenArgs;
use crate::kafka::{ensure_topic, KafkaAddress, Producer};

/// One generated partition; its offsets count its own messages.
pub struct GenPartition {
    generator: Generator,
    reader: PartitionReader,
    line: String,
    offset: u64,
}

impl GenPartition {
    pub fn new(spec: GenSpec, partition: u32, out_of_orderness: i64) -> GenPartition {
        GenPartition {
            generator: Generator::for_partition(spec, partition),
            reader: PartitionReader::new(partition, out_of_orderness),
            line: String::new(),
            offset: 0,
        }
    }
}

impl GenPartition {
    /// Passes over the partition's messages before `offset`: the generator
    /// is a function of its position, so this is where a checkpoint left it.
    pub fn skip_to(&mut self, offset: u64) {
        while self.offset < offset
            && !matches!(self.generator.next_order(&mut self.line), Next::End)
        {
            self.offset += 1;
        }
    }
}

impl PartitionSource for GenPartition {
    fn poll(&mut self, max: usize, out: &mut Vec<Sequenced>) -> anyhow::Result<Poll> {
        let start = out.len();
        for _ in 0..max {
            // The generator's own orders come typed; its invalid messages
            // are parsed (malformed ones have no `ts`: they take the
            // generator's clock).
            let message = match self.generator.next_order(&mut self.line) {
                Next::Order(order) => self.reader.place(Ok(order), self.offset),
                Next::Line => self
                    .reader
                    .read(&self.line, self.offset, self.generator.clock()),
                Next::End if out.len() == start => return Ok(Poll::Ended),
                Next::End => return Ok(Poll::Ready),
            };
            out.push(message);
            self.offset += 1;
        }
        Ok(Poll::Ready)
    }

    fn reader(&mut self) -> &mut PartitionReader {
        &mut self.reader
    }

    fn position(&self) -> (u64, u64) {
        (self.offset, 0)
    }

    fn pace_position(&self) -> u64 {
        self.generator.position()
    }
}

/// `orderflow gen`: the whole stream as JSONL, or to a Kafka topic.
pub fn write(args: GenArgs) -> anyhow::Result<()> {
    let spec = args.gen.spec()?;
    let pace = args.rate.map(|rate| Pace {
        rate: rate as f64,
        started: std::time::Instant::now(),
    });
    if let Some(to) = &args.to {
        return produce(spec, pace, &KafkaAddress::parse(to)?, &args.kafka.options);
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
    let mut generator = Generator::new(spec);
    let mut line = String::new();
    let mut written = 0;
    loop {
        if let Some(pace) = &pace {
            // What is written reaches a reader as it is paced.
            if pace.due(0) <= written {
                if let Err(e) = out.flush() {
                    return closed(e);
                }
                pace.wait(written);
            }
        }
        if !generator.next_into(&mut line) {
            break;
        }
        written += 1;
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()) {
            return closed(e);
        }
    }
    out.flush().or_else(closed)
}

/// A closed pipe (`| head`) is a normal way to stop; other errors are not.
fn closed(e: std::io::Error) -> anyhow::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return Ok(());
    }
    Err(e).context("writing orders")
}

/// `orderflow gen --to kafka://…/TOPIC`: each order keyed by its symbol, in
/// the partition the generator gives it (so a Kafka run sees the partitions
/// `--source gen` makes), timestamped with its event time.
fn produce(
    spec: GenSpec,
    pace: Option<Pace>,
    to: &KafkaAddress,
    options: &[(String, String)],
) -> anyhow::Result<()> {
    let topic = to.topic()?;
    let partitions = ensure_topic(to, options, topic, spec.partitions)?;
    if partitions < spec.partitions as usize {
        bail!(
            "topic {topic} has {partitions} partitions, fewer than --partitions {}",
            spec.partitions
        );
    }
    let producer = Producer::create(to, options)?;
    let started = std::time::Instant::now();
    let mut generator = Generator::new(spec.clone());
    let mut line = String::new();
    let mut sent = 0u64;
    while generator.next_into(&mut line) {
        if let Some(pace) = &pace {
            pace.wait(sent);
        }
        let symbol = generator.symbol();
        producer.send(
            topic,
            Some((symbol % spec.partitions) as i32),
            Some(&symbol_name(symbol)),
            Some(generator.clock()),
            None,
            line.as_bytes(),
        )?;
        sent += 1;
    }
    producer.finish()?;
    eprintln!(
        "produced {sent} orders to {topic} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
