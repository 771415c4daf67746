//! `dir:PATH`: one JSONL file per output, plus a Parquet copy of each for SQL.
//!
//! Workers write records as JSON lines and as Arrow columns into their own
//! buffers (so encoding spreads over the workers) and hand them to one
//! writer thread per file through a bounded queue: the lines after every
//! step, so the file follows the run, the columns only in batches of
//! [`COLUMN_ROWS`] (and at checkpoints and the end), since nobody reads a
//! Parquet copy before it is complete and a small batch costs the Parquet
//! writer as much as a big one. The writer appends the lines to the JSONL
//! file and the columns to the Parquet copy (schema in
//! [`super::columnar`]), which is written under a temporary name, synced
//! and renamed when complete, so a reader never sees half a file and a
//! committed part outlasts a crash of the machine. Both files get a head
//! start to disk as they grow ([`WriteBack`]).
//!
//! With checkpoints, a writer aligns the workers at each checkpoint's
//! barrier (rows a worker sends after its barrier wait until every worker
//! has reached it), so the file then holds exactly the rows up to the
//! checkpoint: its length is recorded, and a restart cuts the file back to
//! it. The Parquet copy is committed as one part per checkpoint,
//! `NAME-ID.parquet`; without checkpoints it is `NAME.parquet`, written at
//! the end.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::TryRecvError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use arrow::record_batch::RecordBatch;
use operators::dataflow::Record;
use operators::output::{Output, OUTPUTS};
use parquet::arrow::ArrowWriter;

use super::columnar::Columns;
use super::queue::{Items, Queue, Writers};
use super::{Commits, Health, Sink, SinkHandle, SinkState, WorkerInfo};
use crate::checkpoint::sync_dir;

/// Bytes of lines a worker buffers per output before handing them over.
const FLUSH_AT: usize = 1 << 18;
/// Rows a worker buffers per output as columns before handing them over.
const COLUMN_ROWS: usize = 1 << 14;
/// How long a writer that found its queue empty waits before it looks
/// again, and only then sleeps until woken.
const LINGER: Duration = Duration::from_millis(1);
/// Chunks a writer's queue holds: what the workers hand over in a
/// [`LINGER`] between steps, with room to spare.
const QUEUED: usize = 64;
/// Bytes after which a file's writer has the kernel start writing them to
/// disk ([`WriteBack`]).
const WRITE_BACK: u64 = 8 << 20;

pub struct DirSink {
    queues: Mutex<Option<Vec<Queue<Chunk>>>>,
    writers: Arc<Writers>,
    workers: usize,
}

/// What a worker hands an output's writer.
enum Chunk {
    /// Whole JSON lines from `worker`, and how many.
    Lines(usize, Vec<u8>, usize),
    /// The same rows as columns, later and in bigger batches.
    Columns(usize, RecordBatch),
    /// `worker` has sent every row of checkpoint `id`.
    Barrier(usize, u64),
}

impl DirSink {
    /// Creates `dir` and its output files: empty for a fresh run, cut back
    /// to their committed lengths when `restore` holds them. Process `p > 0`
    /// of a cluster writes `NAME.pP.jsonl` so that processes sharing a disk
    /// do not overwrite each other. `commits` is set when the run takes
    /// checkpoints.
    pub fn create(
        dir: &Path,
        process: usize,
        workers: usize,
        restore: Option<(u64, &SinkState)>,
        commits: Option<Arc<Commits>>,
    ) -> anyhow::Result<DirSink> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lengths = match restore {
            None => None,
            Some((_, SinkState::Dir { lengths })) if lengths.len() == OUTPUTS.len() => {
                Some(lengths)
            }
            Some((_, other)) => bail!("the checkpoint holds {other:?} for dir:{}", dir.display()),
        };
        let writers = Writers::new("dir");
        let mut queues = Vec::new();
        for (index, output) in OUTPUTS.into_iter().enumerate() {
            let stem = match process {
                0 => output.name.to_string(),
                p => format!("{}.p{p}", output.name),
            };
            let jsonl = dir.join(format!("{stem}.jsonl"));
            let length = lengths.map_or(0, |l| l[index]);
            let file = cut(&jsonl, length)?;
            let parts = Parts {
                dir: dir.to_path_buf(),
                stem,
            };
            parts.remove_after(restore.map_or(0, |(id, _)| id))?;
            let copy = CopyWriter {
                copy: None,
                parts,
                output,
                index,
                commits: commits.clone(),
            };
            let copy = writers.start(format!("parquet-{}", output.name), 2, move |parts| {
                copy.run(parts)
            })?;
            let writer = OutputWriter {
                // A worker's full chunk is at least this long, so it goes
                // to the file as it is; only a step's short ones are joined.
                out: BufWriter::with_capacity(FLUSH_AT, WriteBack::new(file, length)),
                length,
                copy,
                jsonl,
                at_barrier: vec![None; workers],
                held: (0..workers).map(|_| VecDeque::new()).collect(),
            };
            queues.push(
                writers.start(format!("dir-{}", output.name), QUEUED, move |chunks| {
                    writer.run(chunks)
                })?,
            );
        }
        // The files just created must outlast a crash as their synced
        // lengths do.
        sync_dir(dir)?;
        Ok(DirSink {
            queues: Mutex::new(Some(queues)),
            writers,
            workers,
        })
    }
}

/// Opens `path` for appending after its first `length` bytes, cutting off
/// whatever follows them (rows written after the checkpoint).
fn cut(path: &Path, length: u64) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(length == 0)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let found = file.metadata()?.len();
    if found < length {
        bail!(
            "{} holds {found} bytes, fewer than the {length} the checkpoint committed:              it was changed or lost since; restore it, or start afresh with an empty --checkpoint directory",
            path.display()
        );
    }
    file.set_len(length)
        .and_then(|()| file.seek(SeekFrom::Start(length)).map(drop))
        .with_context(|| format!("cutting {} back to {length} bytes", path.display()))?;
    Ok(file)
}

/// The Parquet files of one output: `STEM.parquet` for a run without
/// checkpoints, `STEM-ID.parquet` per checkpoint otherwise, and the one in
/// the making under a temporary name.
struct Parts {
    dir: PathBuf,
    stem: String,
}

impl Parts {
    fn tmp(&self) -> PathBuf {
        self.dir.join(format!("{}.parquet.tmp", self.stem))
    }

    fn whole(&self) -> PathBuf {
        self.dir.join(format!("{}.parquet", self.stem))
    }

    fn part(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{}-{id:08}.parquet", self.stem))
    }

    /// Removes what a run must not keep: the parts of checkpoints after
    /// `kept` (all of them for a fresh run, `kept` 0), the whole file of an
    /// earlier run, and any file in the making.
    fn remove_after(&self, kept: u64) -> anyhow::Result<()> {
        let prefix = format!("{}-", self.stem);
        let mut doomed = vec![self.tmp(), self.whole()];
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let id = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".parquet"))
                .and_then(|id| id.parse::<u64>().ok());
            if id.is_some_and(|id| id > kept) {
                doomed.push(path);
            }
        }
        for path in doomed {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// One output's writer thread: the JSONL file, and the alignment of the
/// workers at checkpoint barriers. It hands the columns on to the output's
/// [`CopyWriter`]: encoding them as Parquet takes a burst of a core, and the
/// lines, which the workers hand over after every step, must not queue
/// behind it (a full queue stops the workers).
struct OutputWriter {
    out: BufWriter<WriteBack>,
    /// Bytes in the JSONL file once `out` is flushed.
    length: u64,
    copy: Queue<ToCopy>,
    jsonl: PathBuf,
    /// The barrier each worker has reached and the others not yet.
    at_barrier: Vec<Option<u64>>,
    /// What each worker sent after its barrier, until all have reached it.
    held: Vec<VecDeque<Chunk>>,
}

impl OutputWriter {
    fn run(mut self, chunks: &Items<Chunk>) -> anyhow::Result<()> {
        let mut next = chunks.recv();
        while let Some(chunk) = next {
            let rows = match &chunk {
                Chunk::Lines(_, _, rows) => *rows,
                Chunk::Columns(..) | Chunk::Barrier(..) => 0,
            };
            self.take(chunk)?;
            chunks.health().wrote(rows);
            // Rows reach the file as soon as the workers go quiet, so a live
            // run can be tailed; under load the buffer still batches writes.
            next = match chunks.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(TryRecvError::Empty) => {
                    self.out.flush().with_context(|| self.context())?;
                    // A steady flow is taken every LINGER rather than as it
                    // comes: a hand-over that wakes its writer costs the
                    // worker more than the writing.
                    std::thread::sleep(LINGER);
                    match chunks.try_recv() {
                        Ok(chunk) => Some(chunk),
                        Err(TryRecvError::Empty) => chunks.recv(),
                        Err(TryRecvError::Disconnected) => None,
                    }
                }
                Err(TryRecvError::Disconnected) => None,
            };
        }
        self.finish()
    }

    fn context(&self) -> String {
        format!("writing {}", self.jsonl.display())
    }

    fn take(&mut self, chunk: Chunk) -> anyhow::Result<()> {
        let worker = match &chunk {
            Chunk::Lines(w, _, _) | Chunk::Columns(w, _) | Chunk::Barrier(w, _) => *w,
        };
        if self.at_barrier[worker].is_some() {
            self.held[worker].push_back(chunk);
            return Ok(());
        }
        match chunk {
            Chunk::Lines(_, lines, _) => {
                self.out.write_all(&lines).with_context(|| self.context())?;
                self.length += lines.len() as u64;
            }
            Chunk::Columns(_, rows) => self.copy.send(ToCopy::Rows(rows))?,
            Chunk::Barrier(_, id) => {
                self.at_barrier[worker] = Some(id);
                if self.at_barrier.iter().all(|b| *b == Some(id)) {
                    self.commit(id)?;
                    self.at_barrier.fill(None);
                    self.release()?;
                }
            }
        }
        Ok(())
    }

    /// What workers sent after the barrier goes out now, up to each one's
    /// next barrier.
    fn release(&mut self) -> anyhow::Result<()> {
        for worker in 0..self.held.len() {
            while self.at_barrier[worker].is_none() {
                let Some(chunk) = self.held[worker].pop_front() else {
                    break;
                };
                self.take(chunk)?;
            }
        }
        Ok(())
    }

    /// Makes the JSONL rows up to checkpoint `id` durable, synced at its
    /// recorded length, and has the copy writer commit the checkpoint.
    fn commit(&mut self, id: u64) -> anyhow::Result<()> {
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().file.sync_data())
            .with_context(|| self.context())?;
        self.copy.send(ToCopy::Commit(id, self.length))
    }

    /// Syncs the JSONL file; the copy writer finishes once its queue,
    /// dropped here, is empty.
    fn finish(self) -> anyhow::Result<()> {
        let context = self.context();
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|w| w.file.sync_all())
            .with_context(|| context)
    }
}

/// A file whose writer has the kernel start writing every [`WRITE_BACK`]
/// bytes to disk as they come, without waiting (as RocksDB's
/// `bytes_per_sync` does): the sync that makes them durable, at a
/// checkpoint or at the end of a run, then finds little left to write,
/// rather than every byte since the start (which held the end of a run of
/// 2M orders for a third of a second). Only a head start: a failed write
/// shows in that sync.
struct WriteBack {
    file: File,
    /// Where the next byte goes, and where the last head start ended.
    at: u64,
    started: u64,
}

impl WriteBack {
    /// `file`, positioned at `at`.
    fn new(file: File, at: u64) -> WriteBack {
        WriteBack {
            file,
            at,
            started: at,
        }
    }

    fn start_writing(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(from), Ok(bytes)) = (
                i64::try_from(self.started),
                i64::try_from(self.at - self.started),
            ) else {
                return;
            };
            // SAFETY: the descriptor is the open file's own, and the call
            // reads no memory of ours.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    from,
                    bytes,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.started = self.at;
    }
}

impl Write for WriteBack {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(bytes)?;
        self.at += written as u64;
        if self.at - self.started >= WRITE_BACK {
            self.start_writing();
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// What an output's writer hands its copy writer, in the order of the
/// JSONL file.
enum ToCopy {
    Rows(RecordBatch),
    /// Checkpoint `id` holds the rows so far, and the JSONL file is synced
    /// at this length.
    Commit(u64, u64),
}

/// One output's Parquet copy, on a thread of its own.
struct CopyWriter {
    /// The Parquet rows since the last commit, once there are any.
    copy: Option<ParquetCopy>,
    parts: Parts,
    output: &'static Output,
    index: usize,
    commits: Option<Arc<Commits>>,
}

impl CopyWriter {
    fn run(mut self, items: &Items<ToCopy>) -> anyhow::Result<()> {
        while let Some(item) = items.recv() {
            match item {
                ToCopy::Rows(rows) => self.write(&rows)?,
                ToCopy::Commit(id, length) => self.commit(id, length)?,
            }
        }
        self.finish()
    }

    fn write(&mut self, rows: &RecordBatch) -> anyhow::Result<()> {
        let tmp = self.parts.tmp();
        let copy = match &mut self.copy {
            Some(copy) => copy,
            None => self.copy.insert(
                ParquetCopy::create(&tmp, self.output)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            ),
        };
        copy.writer
            .write(rows)
            .with_context(|| format!("writing {}", tmp.display()))
    }

    /// Renames the Parquet rows since the last checkpoint into place as
    /// checkpoint `id`'s part; then the output has made `id` durable.
    fn commit(&mut self, id: u64, length: u64) -> anyhow::Result<()> {
        if let Some(copy) = self.copy.take() {
            copy.finish(&self.parts.dir, &self.parts.part(id))?;
        }
        if let Some(commits) = &self.commits {
            let lengths = vec![length];
            commits.arrive(id, self.index, SinkState::Dir { lengths })?;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match (self.commits, self.copy) {
            // Rows after the last checkpoint are not committed: the next
            // run cuts them from the JSONL file and writes them again.
            (Some(_), Some(copy)) => std::fs::remove_file(&copy.tmp)
                .with_context(|| format!("removing {}", copy.tmp.display())),
            (Some(_), None) => Ok(()),
            // Without checkpoints every output has its file, rows or not.
            (None, copy) => match copy {
                Some(copy) => copy,
                None => ParquetCopy::create(&self.parts.tmp(), self.output)?,
            }
            .finish(&self.parts.dir, &self.parts.whole()),
        }
    }
}

/// The Parquet copy of one output, kept under a temporary name until
/// complete.
struct ParquetCopy {
    writer: ArrowWriter<WriteBack>,
    tmp: PathBuf,
}

impl ParquetCopy {
    fn create(tmp: &Path, output: &Output) -> anyhow::Result<ParquetCopy> {
        let tmp = tmp.to_path_buf();
        let schema = Arc::new(super::columnar::schema(output));
        let props = super::columnar::properties(output);
        let file = WriteBack::new(File::create(&tmp)?, 0);
        let writer = ArrowWriter::try_new(file, schema, Some(props))?;
        Ok(ParquetCopy { writer, tmp })
    }

    /// Completes the file and renames it to `path` in `dir`, durably: a
    /// checkpoint counts the part committed once this returns, and a restart
    /// never writes it again.
    fn finish(mut self, dir: &Path, path: &Path) -> anyhow::Result<()> {
        self.writer.finish()?;
        self.writer
            .inner()
            .file
            .sync_all()
            .with_context(|| format!("syncing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, path)
            .with_context(|| format!("renaming {} to {}", self.tmp.display(), path.display()))?;
        sync_dir(dir)
    }
}

impl Sink for DirSink {
    fn handle(&self, worker: &WorkerInfo) -> anyhow::Result<Box<dyn SinkHandle>> {
        let queues = self
            .queues
            .lock()
            .map_err(|_| anyhow!("dir sink poisoned"))?
            .clone()
            .ok_or_else(|| anyhow!("dir sink already closed"))?;
        Ok(Box::new(DirHandle {
            queues,
            buffers: OUTPUTS.into_iter().map(Buffer::new).collect(),
            worker: worker.index % self.workers,
        }))
    }

    fn close(&self) -> anyhow::Result<()> {
        drop(
            self.queues
                .lock()
                .map_err(|_| anyhow!("dir sink poisoned"))?
                .take(),
        );
        self.writers.join()
    }

    fn health(&self) -> &Health {
        &self.writers.health
    }
}

struct DirHandle {
    queues: Vec<Queue<Chunk>>,
    /// Per output, the rows not yet handed over.
    buffers: Vec<Buffer>,
    /// The worker's index within its process.
    worker: usize,
}

/// One output's rows in a worker, as lines and as columns.
struct Buffer {
    lines: Vec<u8>,
    /// Rows in `lines`.
    rows: usize,
    columns: Columns,
    /// Rows in `columns`.
    column_rows: usize,
}

impl Buffer {
    fn new(output: &Output) -> Buffer {
        Buffer {
            lines: Vec::with_capacity(FLUSH_AT + 1024),
            rows: 0,
            columns: Columns::new(output),
            column_rows: 0,
        }
    }
}

impl DirHandle {
    /// Hands over `output`'s lines, and its columns too when `columns`.
    fn send(&mut self, output: usize, columns: bool) -> anyhow::Result<()> {
        let (buffer, queue) = (&mut self.buffers[output], &self.queues[output]);
        if buffer.rows > 0 {
            // The next chunk is likely as big as this one: small when paced,
            // up to FLUSH_AT flat out.
            let next = Vec::with_capacity(buffer.lines.len() + 1024);
            let lines = std::mem::replace(&mut buffer.lines, next);
            queue.send(Chunk::Lines(self.worker, lines, buffer.rows))?;
            buffer.rows = 0;
        }
        if columns && buffer.column_rows > 0 {
            queue.send(Chunk::Columns(self.worker, buffer.columns.batch()?))?;
            buffer.column_rows = 0;
        }
        Ok(())
    }

    /// Hands over every output's lines, and columns when `columns`.
    fn send_all(&mut self, columns: bool) -> anyhow::Result<()> {
        (0..OUTPUTS.len()).try_for_each(|output| self.send(output, columns))
    }
}

impl SinkHandle for DirHandle {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        let output = record.output();
        let buffer = &mut self.buffers[output];
        operators::json::write(record, &mut buffer.lines);
        buffer.lines.push(b'\n');
        buffer.rows += 1;
        buffer.columns.push(record);
        buffer.column_rows += 1;
        let columns = buffer.column_rows >= COLUMN_ROWS;
        if columns || buffer.lines.len() >= FLUSH_AT {
            self.send(output, columns)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.send_all(false)
    }

    fn barrier(&mut self, id: u64) -> anyhow::Result<()> {
        self.send_all(true)?;
        for queue in &self.queues {
            queue.send(Chunk::Barrier(self.worker, id))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.send_all(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written through a `BufWriter` in chunks of any size reach the
    /// file whole and in order, and the head start comes with the write
    /// that passes 8 MiB.
    #[test]
    fn write_back_passes_every_byte_on_and_starts_at_8_mib() {
        let path = std::env::temp_dir().join(format!("orderflow-wb-{}", std::process::id()));
        let bytes: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut out =
            BufWriter::with_capacity(FLUSH_AT, WriteBack::new(File::create(&path).unwrap(), 0));
        for chunk in bytes.chunks(300_007) {
            out.write_all(chunk).unwrap();
        }
        let file = out.into_inner().map_err(|e| e.into_error()).unwrap();
        // One head start, at the write that passed 8 MiB.
        assert_eq!(file.at, 12 << 20);
        let past = file.started.checked_sub(WRITE_BACK);
        assert!(
            past.is_some_and(|b| b < 300_007),
            "started at {}",
            file.started
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_file(path).unwrap();
    }
}
