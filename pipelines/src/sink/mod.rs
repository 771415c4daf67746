//! Sinks: where records go. Each worker writes through its own handle, so
//! serialization runs in parallel; a sink's shared part (files, clients)
//! sits behind bounded queues so a slow destination slows the source.

pub mod dir;
pub mod kafka;

use std::sync::Arc;

use anyhow::bail;
use operators::dataflow::Record;

/// A destination, shared by the workers of a process.
pub trait Sink: Send + Sync {
    /// A handle for one worker.
    fn handle(&self) -> anyhow::Result<Box<dyn SinkHandle>>;
    /// Finishes writing once every handle is gone.
    fn close(&self) -> anyhow::Result<()>;
}

/// One worker's way into a sink.
pub trait SinkHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()>;
    /// Hands everything buffered to the sink.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// Opens the sinks named by `--sink` flags; `kafka_options` are librdkafka
/// settings for Kafka sinks.
pub fn open(
    specs: &[String],
    process: usize,
    kafka_options: &[(String, String)],
) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    specs
        .iter()
        .map(|spec| match spec.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => {
                Ok(Arc::new(dir::DirSink::create(path.as_ref(), process)?) as Arc<dyn Sink>)
            }
            Some(("kafka", _)) => {
                let address = crate::kafka::KafkaAddress::parse(spec)?;
                Ok(Arc::new(kafka::KafkaSink::create(&address, kafka_options)?) as Arc<dyn Sink>)
            }
            _ => bail!("--sink must be `dir:PATH` or `kafka://HOST:PORT`, not `{spec}`"),
        })
        .collect()
}
