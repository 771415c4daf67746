//! Sinks: where records go. Each worker writes through its own handle, so
//! serialization runs in parallel; a sink's shared part (files, clients)
//! sits behind bounded queues so a slow destination slows the source.

pub mod clickhouse;
pub mod dir;
pub mod kafka;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::bail;
use operators::dataflow::Record;

/// A destination, shared by the workers of a process.
pub trait Sink: Send + Sync {
    /// A handle for one worker.
    fn handle(&self, worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>>;
    /// Finishes writing once every handle is gone.
    fn close(&self) -> anyhow::Result<()>;
}

/// One worker's way into a sink.
pub trait SinkHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()>;
    /// Called after each step of the worker's sink operator: hands over
    /// what is due (a sink that batches further keeps rows no longer than
    /// its flush period) and reports failures.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// What a sink handle may know of its worker.
pub struct WorkerInfo {
    /// The worker's index across all processes.
    pub index: usize,
    /// The lowest watermark of the worker's open source partitions, kept
    /// current by the worker; `None` while it has none.
    pub watermark: Rc<Cell<Option<i64>>>,
}

/// Settings the sinks of a run share.
pub struct SinkSettings<'a> {
    pub process: usize,
    /// librdkafka settings for Kafka sinks.
    pub kafka_options: &'a [(String, String)],
    /// Whether a ClickHouse sink creates its database and tables if missing.
    pub create_tables: bool,
}

/// Opens the sinks named by `--sink` flags.
pub fn open(specs: &[String], settings: &SinkSettings) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    specs
        .iter()
        .map(|spec| match spec.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => {
                let sink = dir::DirSink::create(path.as_ref(), settings.process)?;
                Ok(Arc::new(sink) as Arc<dyn Sink>)
            }
            Some(("kafka", _)) => {
                let address = crate::kafka::KafkaAddress::parse(spec)?;
                let sink = kafka::KafkaSink::create(&address, settings.kafka_options)?;
                Ok(Arc::new(sink) as Arc<dyn Sink>)
            }
            Some(("clickhouse", _)) => {
                let sink = clickhouse::ClickHouseSink::create(
                    spec,
                    settings.process,
                    settings.create_tables,
                )?;
                Ok(Arc::new(sink) as Arc<dyn Sink>)
            }
            _ => bail!(
                "--sink must be `dir:PATH`, `kafka://HOST:PORT` or `clickhouse://HOST:PORT/DATABASE`, not `{spec}`"
            ),
        })
        .collect()
}
