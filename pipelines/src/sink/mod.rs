//! Sinks: where records go. Each worker writes through its own handle, so
//! serialization runs in parallel; a sink's shared part (files, clients)
//! sits behind bounded queues so a slow destination slows the source.

pub mod dir;

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

/// Opens the sinks named by `--sink` flags.
pub fn open(specs: &[String], process: usize) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    specs
        .iter()
        .map(|spec| match spec.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => {
                Ok(Arc::new(dir::DirSink::create(path.as_ref(), process)?) as Arc<dyn Sink>)
            }
            _ => bail!("--sink must be `dir:PATH`, not `{spec}`"),
        })
        .collect()
}
