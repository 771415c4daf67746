//! `file:PATH` and `file:-`: a JSONL file (or stdin) as one partition.
//!
//! A thread reads and parses lines into chunks ahead of the worker, so a
//! slow pipe (stdin) never blocks the dataflow, and reading and parsing,
//! a whole input's worth on one partition, run beside the workers rather
//! than on the one that owns the partition. Offsets are 0-based line
//! numbers; blank lines are not messages.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use operators::order::{self, OrderMsg, Rejected};
use operators::partition::{PartitionReader, Sequenced};

use super::{now_ms, PartitionSource, Poll};
use crate::progress::Counters;

const CHUNK_LINES: usize = 8_192;

/// A line read ahead: its number, the byte after it, and what it says.
type Line = (u64, u64, Result<OrderMsg, Rejected>);

struct Chunk {
    lines: Vec<Line>,
}

pub struct FilePartition {
    reader: PartitionReader,
    chunks: Receiver<Chunk>,
    current: std::vec::IntoIter<Line>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    /// The line number and byte after the last line polled.
    next: (u64, u64),
}

impl FilePartition {
    /// Reads `path` (stdin when `None`) from `start`, a line number and
    /// the byte it begins at.
    pub fn open(
        path: Option<&Path>,
        out_of_orderness: i64,
        counters: Arc<Counters>,
        start: (u64, u64),
    ) -> anyhow::Result<FilePartition> {
        let input: Box<dyn Read + Send> = match path {
            Some(path) => {
                let mut file = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                file.seek(SeekFrom::Start(start.1))
                    .with_context(|| format!("seeking {} to byte {}", path.display(), start.1))?;
                counters.input_bytes.fetch_add(start.1, Ordering::Relaxed);
                Box::new(file)
            }
            None => Box::new(std::io::stdin()),
        };
        let (tx, chunks) = sync_channel(4);
        let thread = std::thread::Builder::new()
            .name("file-reader".into())
            .spawn(move || {
                read_lines(
                    BufReader::with_capacity(1 << 20, input),
                    start,
                    tx,
                    &counters.input_bytes,
                )
            })?;
        Ok(FilePartition {
            reader: PartitionReader::new(0, out_of_orderness),
            chunks,
            current: Vec::new().into_iter(),
            thread: Some(thread),
            next: start,
        })
    }
}

fn read_lines(
    mut input: BufReader<Box<dyn Read + Send>>,
    (mut number, mut at): (u64, u64),
    tx: std::sync::mpsc::SyncSender<Chunk>,
    bytes_read: &AtomicU64,
) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    let mut lines = Vec::with_capacity(CHUNK_LINES);
    // A message without `ts` takes the time its bytes came in: set at each
    // refill of the (at first empty) buffer.
    let mut ingested = 0;
    loop {
        bytes.clear();
        if input.buffer().is_empty() {
            ingested = now_ms();
        }
        let n = input
            .read_until(b'\n', &mut bytes)
            .context("reading input")?;
        if n == 0 {
            break;
        }
        bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        at += n as u64;
        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text.iter().all(u8::is_ascii_whitespace) {
            let msg = match std::str::from_utf8(text) {
                Ok(line) => order::parse(line, ingested),
                // Not UTF-8: kept (lossily) only to show in the rejected event.
                Err(_) => Err(Rejected::malformed(
                    String::from_utf8_lossy(text).into_owned(),
                    ingested,
                )),
            };
            lines.push((number, at, msg));
        }
        number += 1;
        // Hand over a full chunk, or whatever there is when the next read
        // would wait for more input (a quiet pipe must not hold lines back).
        if lines.len() == CHUNK_LINES || !lines.is_empty() && input.buffer().is_empty() {
            let full = std::mem::replace(&mut lines, Vec::with_capacity(CHUNK_LINES));
            if tx.send(Chunk { lines: full }).is_err() {
                return Ok(());
            }
        }
    }
    if !lines.is_empty() {
        let _ = tx.send(Chunk { lines });
    }
    Ok(())
}

impl PartitionSource for FilePartition {
    fn poll(&mut self, max: usize, out: &mut Vec<Sequenced>) -> anyhow::Result<Poll> {
        let start = out.len();
        while out.len() - start < max {
            match self.current.next() {
                Some((offset, end, msg)) => {
                    self.next = (offset + 1, end);
                    out.push(self.reader.place(msg, offset));
                }
                None => match self.chunks.try_recv() {
                    Ok(chunk) => self.current = chunk.lines.into_iter(),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if let Some(thread) = self.thread.take() {
                            thread
                                .join()
                                .map_err(|_| anyhow!("the file reader panicked"))??;
                        }
                        if out.len() == start {
                            return Ok(Poll::Ended);
                        }
                        break;
                    }
                },
            }
        }
        Ok(if out.len() > start {
            Poll::Ready
        } else {
            Poll::Idle
        })
    }

    fn reader(&mut self) -> &mut PartitionReader {
        &mut self.reader
    }

    fn position(&self) -> (u64, u64) {
        self.next
    }
}
