//! The broker's raw consume rate, for comparison with the pipeline's: a
//! plain rdkafka consumer reading every partition of a topic from the
//! beginning to the end offsets of the moment, touching each payload.
//!
//! `cargo run --release -p orderflow --example kafka_consume -- HOST:PORT TOPIC`

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(broker), Some(topic)) = (args.next(), args.next()) else {
        return Err("usage: kafka_consume HOST:PORT TOPIC".into());
    };
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .set("enable.partition.eof", "false")
        // librdkafka assigns partitions only to a consumer with a group.
        .set("group.id", "kafka-consume")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, *p, timeout)?;
        assignment.add_partition_offset(&topic, *p, Offset::Offset(low))?;
        remaining += high - low;
    }
    let total = remaining;
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut bytes = 0usize;
    while remaining > 0 {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            bytes += message?.payload().map_or(0, <[u8]>::len);
            remaining -= 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "raw consumer: {total} records ({:.1} MB) from {} partitions in {seconds:.2} s: {:.0} records/s",
        bytes as f64 / 1e6,
        partitions.len(),
        total as f64 / seconds
    );
    Ok(())
}
