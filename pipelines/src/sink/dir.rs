//! `dir:PATH`: one JSONL file per output, plus a Parquet copy of each for SQL.
//!
//! Workers serialize records into their own buffers and hand full buffers to
//! one writer thread per file through a bounded queue. The writer appends
//! them to the JSONL file and decodes the same lines into the Parquet copy
//! (prices and quantities as `Decimal128(38, 8)`, times as UTC millisecond
//! timestamps), which is written under a temporary name and renamed when the
//! run ends, so a reader never sees half a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use operators::dataflow::{Record, OUTPUTS};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{Sink, SinkHandle, WorkerInfo};

/// Bytes a worker buffers per output before handing them over.
const FLUSH_AT: usize = 1 << 16;

/// The Arrow schema of an output's Parquet copy.
pub fn schema(output: &str) -> Schema {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let decimal = |name: &str| Field::new(name, DataType::Decimal128(38, 8), true);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            true,
        )
    };
    let count = |name: &str| Field::new(name, DataType::UInt64, true);
    let trade = || {
        vec![
            text("trade_id"),
            text("symbol"),
            count("seq"),
            decimal("price"),
            decimal("qty"),
            text("maker_order_id"),
            text("taker_order_id"),
            text("taker_side"),
            time("ts"),
        ]
    };
    let fields = match output {
        "events" => vec![
            text("symbol"),
            text("order_id"),
            count("seq"),
            text("status"),
            text("reason"),
            time("ts"),
            text("raw"),
        ],
        "trades" => trade(),
        "bbo" => vec![
            text("symbol"),
            count("seq"),
            decimal("bid"),
            decimal("bid_qty"),
            decimal("ask"),
            decimal("ask_qty"),
            time("ts"),
        ],
        "candles" => vec![
            text("symbol"),
            text("interval"),
            time("window_start"),
            time("window_end"),
            decimal("open"),
            decimal("high"),
            decimal("low"),
            decimal("close"),
            decimal("volume"),
            decimal("vwap"),
            count("trades"),
            Field::new("version", DataType::UInt32, true),
        ],
        "late" => {
            let mut fields = trade();
            fields.push(text("interval"));
            fields
        }
        other => unreachable!("no output named {other}"),
    };
    Schema::new(fields)
}

pub struct DirSink {
    senders: Mutex<Option<Vec<SyncSender<Vec<u8>>>>>,
    writers: Mutex<Vec<JoinHandle<anyhow::Result<()>>>>,
}

impl DirSink {
    /// Creates `dir` and empties its output files. Process `p > 0` of a
    /// cluster writes `NAME.pP.jsonl` so that processes sharing a disk do not
    /// overwrite each other.
    pub fn create(dir: &Path, process: usize) -> anyhow::Result<DirSink> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut senders = Vec::new();
        let mut writers = Vec::new();
        for output in OUTPUTS {
            let stem = match process {
                0 => output.to_string(),
                p => format!("{output}.p{p}"),
            };
            let jsonl = dir.join(format!("{stem}.jsonl"));
            let file =
                File::create(&jsonl).with_context(|| format!("creating {}", jsonl.display()))?;
            let parquet = dir.join(format!("{stem}.parquet"));
            let (tx, rx) = sync_channel(16);
            senders.push(tx);
            writers.push(
                std::thread::Builder::new()
                    .name(format!("dir-{output}"))
                    .spawn(move || write_output(rx, file, &jsonl, &parquet, output))?,
            );
        }
        Ok(DirSink {
            senders: Mutex::new(Some(senders)),
            writers: Mutex::new(writers),
        })
    }
}

fn write_output(
    chunks: Receiver<Vec<u8>>,
    file: File,
    jsonl: &Path,
    parquet: &Path,
    output: &str,
) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut copy = ParquetCopy::create(parquet, output)
        .with_context(|| format!("creating {}", parquet.display()))?;
    let context = || format!("writing {}", jsonl.display());
    let parquet_context = || format!("writing {}", parquet.display());
    let mut next = chunks.recv().ok();
    while let Some(chunk) = next {
        out.write_all(&chunk).with_context(context)?;
        copy.add(&chunk).with_context(parquet_context)?;
        // Rows reach the file as soon as the workers go quiet, so a live run
        // can be tailed; under load the buffer still batches the writes.
        next = match chunks.try_recv() {
            Ok(chunk) => Some(chunk),
            Err(TryRecvError::Empty) => {
                out.flush().with_context(context)?;
                chunks.recv().ok()
            }
            Err(TryRecvError::Disconnected) => None,
        };
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(context)?;
    copy.finish().with_context(parquet_context)
}

/// The Parquet copy of one output, decoded from the same JSON lines as they
/// are written (so it costs no second pass at the end), kept under a
/// temporary name until complete.
struct ParquetCopy {
    decoder: arrow::json::reader::Decoder,
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl ParquetCopy {
    fn create(path: &Path, output: &str) -> anyhow::Result<ParquetCopy> {
        let schema = Arc::new(schema(output));
        let decoder = arrow::json::ReaderBuilder::new(Arc::clone(&schema))
            .with_batch_size(64 * 1024)
            .build_decoder()?;
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(File::create(&tmp)?, schema, Some(props))?;
        Ok(ParquetCopy {
            decoder,
            writer,
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Takes whole JSON lines.
    fn add(&mut self, mut lines: &[u8]) -> anyhow::Result<()> {
        while !lines.is_empty() {
            let read = self.decoder.decode(lines)?;
            lines = &lines[read..];
            // The decoder stops at a full batch: write it out and go on.
            if read == 0 || !lines.is_empty() {
                self.write_batch()?;
            }
        }
        Ok(())
    }

    fn write_batch(&mut self) -> anyhow::Result<()> {
        if let Some(batch) = self.decoder.flush()? {
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.write_batch()?;
        self.writer.close()?;
        std::fs::rename(&self.tmp, &self.path)?;
        Ok(())
    }
}

impl Sink for DirSink {
    fn handle(&self, _worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>> {
        let senders = self
            .senders
            .lock()
            .map_err(|_| anyhow!("dir sink poisoned"))?
            .clone()
            .ok_or_else(|| anyhow!("dir sink already closed"))?;
        Ok(Box::new(DirHandle {
            senders,
            buffers: Default::default(),
        }))
    }

    fn close(&self) -> anyhow::Result<()> {
        drop(
            self.senders
                .lock()
                .map_err(|_| anyhow!("dir sink poisoned"))?
                .take(),
        );
        let writers = std::mem::take(
            &mut *self
                .writers
                .lock()
                .map_err(|_| anyhow!("dir sink poisoned"))?,
        );
        for writer in writers {
            writer
                .join()
                .map_err(|_| anyhow!("a dir writer panicked"))??;
        }
        Ok(())
    }
}

struct DirHandle {
    senders: Vec<SyncSender<Vec<u8>>>,
    buffers: [Vec<u8>; 5],
}

impl DirHandle {
    fn send(&mut self, output: usize) -> anyhow::Result<()> {
        let chunk = std::mem::replace(
            &mut self.buffers[output],
            Vec::with_capacity(FLUSH_AT + 1024),
        );
        self.senders[output]
            .send(chunk)
            .map_err(|_| anyhow!("the {} writer stopped", OUTPUTS[output]))
    }
}

impl SinkHandle for DirHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        let output = record.output();
        let buffer = &mut self.buffers[output];
        serde_json::to_writer(&mut *buffer, record)?;
        buffer.push(b'\n');
        if buffer.len() >= FLUSH_AT {
            self.send(output)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for output in 0..OUTPUTS.len() {
            if !self.buffers[output].is_empty() {
                self.send(output)?;
            }
        }
        Ok(())
    }
}
