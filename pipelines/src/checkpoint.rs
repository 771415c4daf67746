//! Durable state: checkpoints written atomically to a local directory.
//!
//! A checkpoint is taken at a timely time that worker 0 picks: every
//! operator snapshots its state once that time is complete (so each has seen
//! exactly the messages up to every partition's recorded position), and
//! every sink commits what it was handed up to it. One thread here collects
//! the parts; when the last one arrives it writes the manifest (temporary
//! name, fsync, rename) and renames the checkpoint's directory into place.
//! A directory without its manifest is not a checkpoint, so a crash at any
//! moment leaves the previous one standing.
//!
//! ```text
//! DIR/checkpoint-00000042/
//!     books-w0.bin  books-w1.bin      each worker's books (postcard)
//!     windows-w0.bin windows-w1.bin   each worker's open windows per partition
//!     manifest.json                   id, configuration, every partition's
//!                                     position and watermark, sink states
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use operators::dataflow::{PartitionMark, Restored, Snapshot};
use operators::output::VIEWS;
use serde::{Deserialize, Serialize};

use crate::sink::SinkState;

/// What a checkpoint must agree on with the run that resumes from it: a
/// difference would change outputs silently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The source, as far as it decides which messages come in which order.
    pub source: String,
    pub intervals: Vec<String>,
    pub lateness_ms: i64,
    pub out_of_orderness_ms: i64,
    /// The `--sink` flags, in order: each sink's committed state is theirs.
    pub sinks: Vec<String>,
    /// The `--outputs` the sinks write.
    pub outputs: Vec<String>,
}

impl Fingerprint {
    /// What differs from `other`, or `None`; the sinks and outputs only
    /// when `sinks` (a replay writes where it likes).
    fn differences(&self, other: &Fingerprint, sinks: bool) -> Option<String> {
        let mut said = Vec::new();
        let mut differ = |what: &str, ours: String, theirs: String| {
            if ours != theirs {
                said.push(format!("{what} was {theirs}, now {ours}"));
            }
        };
        differ("the source", self.source.clone(), other.source.clone());
        differ(
            "--intervals",
            self.intervals.join(","),
            other.intervals.join(","),
        );
        differ(
            "--lateness",
            format!("{}ms", self.lateness_ms),
            format!("{}ms", other.lateness_ms),
        );
        differ(
            "--out-of-orderness",
            format!("{}ms", self.out_of_orderness_ms),
            format!("{}ms", other.out_of_orderness_ms),
        );
        if sinks {
            differ("--sink", self.sinks.join(" "), other.sinks.join(" "));
            differ("--outputs", self.outputs.join(","), other.outputs.join(","));
        }
        // The views start from the positions a checkpoint keeps, and one
        // written without the views kept none of the fills since.
        let views = |f: &Fingerprint| {
            f.outputs
                .iter()
                .any(|o| VIEWS.iter().any(|v| v.name == o.as_str()))
        };
        if views(self) && !views(other) {
            said.push(
                "it was written without the views (positions, exposure, depth), \
                 which now are asked for (--no-views leaves them out)"
                    .into(),
            );
        }
        (!said.is_empty()).then(|| said.join("; "))
    }
}

/// The manifest: written last, so its presence makes a checkpoint complete.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub id: u64,
    /// Wall-clock time of completion, ms since the Unix epoch.
    pub created_ms: i64,
    pub config: Fingerprint,
    /// Workers that wrote parts: `books-wN.bin` and `windows-wN.bin` for each.
    pub workers: usize,
    /// Every partition's position and watermark.
    pub partitions: Vec<PartitionMark>,
    /// Each sink's committed state, in `--sink` order.
    pub sinks: Vec<SinkState>,
    /// Bytes of the parts, and how long the checkpoint took from request to
    /// manifest.
    pub bytes: u64,
    pub duration_ms: u64,
}

/// `--checkpoint DIR` and its settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub dir: PathBuf,
    pub interval: Duration,
    pub retention: Duration,
}

/// A checkpoint loaded to resume from.
pub struct Resume {
    pub manifest: Manifest,
    pub restored: Restored,
}

/// The newest complete checkpoint in `dir` that `config` may resume from;
/// `None` when there is none. Unfinished directories are removed.
pub fn load(dir: &Path, config: &Fingerprint) -> anyhow::Result<Option<Resume>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let Some((path, manifest)) = manifests(dir, true)?.pop() else {
        return Ok(None);
    };
    if let Some(differences) = config.differences(&manifest.config, true) {
        bail!(
            "checkpoint {} in {} was written by another configuration: {differences}. \
             Run with the settings it was written with, or give another --checkpoint directory \
             (or empty this one) to start afresh",
            manifest.id,
            dir.display()
        );
    }
    resume(&path, manifest).map(Some)
}

/// The newest complete checkpoint in `dir` taken at or before `starts`
/// (every partition's recorded offset at or before its start there), for a
/// replay from `starts` with `config`; `None` when there is none.
pub fn load_before(
    dir: &Path,
    config: &Fingerprint,
    starts: &[(i32, i64)],
) -> anyhow::Result<Option<Resume>> {
    let before = |m: &Manifest| {
        m.partitions.iter().all(|mark| {
            starts
                .iter()
                .find(|(p, _)| *p as u32 == mark.partition)
                .is_some_and(|(_, start)| mark.next_offset as i64 <= *start)
        })
    };
    let found = match std::fs::metadata(dir) {
        Ok(_) => manifests(dir, false)?,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let Some((path, manifest)) = found.into_iter().rev().find(|(_, m)| before(m)) else {
        return Ok(None);
    };
    if let Some(differences) = config.differences(&manifest.config, false) {
        bail!(
            "checkpoint {} in {}, the newest before --from, was written by another \
             configuration: {differences}. Replay with the settings it was written with; \
             to derive other intervals, replay --from earliest",
            manifest.id,
            dir.display()
        );
    }
    resume(&path, manifest).map(Some)
}

/// The complete checkpoints in `dir` with their manifests, oldest first.
fn manifests(dir: &Path, remove_unfinished: bool) -> anyhow::Result<Vec<(PathBuf, Manifest)>> {
    complete(dir, remove_unfinished)?
        .into_iter()
        .map(|(_, path)| {
            let file = path.join(MANIFEST);
            let manifest = std::fs::read(&file)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
                .with_context(|| format!("reading {}", file.display()))?;
            Ok((path, manifest))
        })
        .collect()
}

/// The state a checkpoint's parts hold.
fn resume(path: &Path, manifest: Manifest) -> anyhow::Result<Resume> {
    let mut restored = Restored {
        marks: manifest.partitions.clone(),
        ..Restored::default()
    };
    for worker in 0..manifest.workers {
        for part in ["books", "windows"] {
            let file = path.join(format!("{part}-w{worker}.bin"));
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            match postcard::from_bytes(&bytes)
                .with_context(|| format!("decoding {}", file.display()))?
            {
                Snapshot::Books(books) => restored.books.extend(books),
                Snapshot::Windows { windows, .. } => restored.windows.extend(windows),
            }
        }
    }
    Ok(Resume { manifest, restored })
}

const MANIFEST: &str = "manifest.json";
const PREFIX: &str = "checkpoint-";

/// Complete checkpoints in `dir`, oldest first, as (id, path); with
/// `remove_unfinished` (at start-up, when none can still be in the making)
/// removes the directories of checkpoints that never completed.
fn complete(dir: &Path, remove_unfinished: bool) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        match rest.parse::<u64>() {
            Ok(id) if path.join(MANIFEST).is_file() => found.push((id, path)),
            _ if remove_unfinished => std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the unfinished {}", path.display()))?,
            _ => {}
        }
    }
    found.sort();
    Ok(found)
}

fn name(id: u64) -> String {
    format!("{PREFIX}{id:08}")
}

/// Something a checkpoint is made of, sent to the collecting thread.
enum Part {
    Snapshot {
        id: u64,
        worker: usize,
        snapshot: Snapshot,
    },
    Sink {
        id: u64,
        index: usize,
        state: SinkState,
    },
}

/// How checkpointing went, for the summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub completed: u64,
    pub last_id: Option<u64>,
    pub last_bytes: u64,
    pub max_duration: Duration,
    /// When the last one completed, and how long it took.
    pub last_at: Option<Instant>,
    pub last_duration: Duration,
}

/// Takes parts from every worker and sink and completes checkpoints.
pub struct Checkpointer {
    parts: Mutex<Option<Sender<Part>>>,
    thread: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
    stats: Arc<Mutex<Stats>>,
    requested: Mutex<BTreeMap<u64, Instant>>,
}

impl Checkpointer {
    /// Completes checkpoints in `settings.dir` from the parts of `workers`
    /// workers and `sinks` sinks.
    pub fn start(
        settings: &Settings,
        config: Fingerprint,
        workers: usize,
        sinks: usize,
    ) -> anyhow::Result<Arc<Checkpointer>> {
        let (tx, rx) = channel();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let collector = Collector {
            dir: settings.dir.clone(),
            retention: settings.retention,
            config,
            workers,
            sinks,
            pending: BTreeMap::new(),
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name("checkpoints".into())
            .spawn(move || collector.run(rx))?;
        Ok(Arc::new(Checkpointer {
            parts: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stats,
            requested: Mutex::default(),
        }))
    }

    /// Worker 0 asks for checkpoint `id`.
    pub fn requested(&self, id: u64) {
        if let Ok(mut requested) = self.requested.lock() {
            requested.insert(id, Instant::now());
        }
    }

    /// Whether every requested checkpoint has completed (or failed).
    pub fn idle(&self) -> bool {
        let done = self.stats().last_id;
        self.requested
            .lock()
            .map(|r| r.keys().next_back().is_none_or(|id| Some(*id) <= done))
            .unwrap_or(true)
    }

    pub fn snapshot(&self, id: u64, worker: usize, snapshot: Snapshot) {
        self.send(Part::Snapshot {
            id,
            worker,
            snapshot,
        });
    }

    /// Sink `index` has made durable everything up to checkpoint `id`.
    pub fn committed(&self, id: u64, index: usize, state: SinkState) {
        self.send(Part::Sink { id, index, state });
    }

    fn send(&self, part: Part) {
        if let Some(tx) = self.parts.lock().ok().and_then(|p| p.clone()) {
            // A send fails only once the collector has stopped on an error,
            // which `finish` reports.
            let _ = tx.send(part);
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether the collector stopped on an error (reported by `finish`).
    pub fn failed(&self) -> bool {
        self.thread
            .lock()
            .map(|t| t.as_ref().is_some_and(|t| t.is_finished()))
            .unwrap_or(true)
    }

    /// Waits for the checkpoints whose parts have all arrived, then stops.
    pub fn finish(&self) -> anyhow::Result<Stats> {
        drop(self.parts.lock().map_err(|_| anyhow!("poisoned"))?.take());
        if let Some(thread) = self.thread.lock().map_err(|_| anyhow!("poisoned"))?.take() {
            thread
                .join()
                .map_err(|_| anyhow!("the checkpoint writer panicked"))??;
        }
        Ok(self.stats())
    }
}

/// A checkpoint whose parts are still arriving.
#[derive(Default)]
struct Pending {
    started: Option<Instant>,
    parts: usize,
    bytes: u64,
    marks: Option<Vec<PartitionMark>>,
    sinks: BTreeMap<usize, SinkState>,
}

struct Collector {
    dir: PathBuf,
    retention: Duration,
    config: Fingerprint,
    workers: usize,
    sinks: usize,
    pending: BTreeMap<u64, Pending>,
    stats: Arc<Mutex<Stats>>,
}

impl Collector {
    fn run(mut self, parts: Receiver<Part>) -> anyhow::Result<()> {
        while let Ok(part) = parts.recv() {
            let id = match &part {
                Part::Snapshot { id, .. } | Part::Sink { id, .. } => *id,
            };
            self.take(part)?;
            let pending = &self.pending[&id];
            if pending.parts == 2 * self.workers && pending.sinks.len() == self.sinks {
                let pending = self.pending.remove(&id).expect("present");
                self.complete(id, pending)?;
            }
        }
        Ok(())
    }

    fn take(&mut self, part: Part) -> anyhow::Result<()> {
        match part {
            Part::Snapshot {
                id,
                worker,
                snapshot,
            } => {
                let tmp = self.dir.join(format!("{}.tmp", name(id)));
                let pending = self.pending.entry(id).or_default();
                pending.started.get_or_insert_with(Instant::now);
                let file = match &snapshot {
                    Snapshot::Books(_) => format!("books-w{worker}.bin"),
                    Snapshot::Windows { marks, .. } => {
                        // Every worker sees every partition's marks; one copy.
                        if worker == 0 {
                            pending.marks = Some(marks.clone());
                        }
                        format!("windows-w{worker}.bin")
                    }
                };
                std::fs::create_dir_all(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                let bytes = postcard::to_stdvec(&snapshot).context("encoding a snapshot")?;
                write_synced(&tmp.join(&file), &bytes)?;
                pending.parts += 1;
                pending.bytes += bytes.len() as u64;
            }
            Part::Sink { id, index, state } => {
                self.pending
                    .entry(id)
                    .or_default()
                    .sinks
                    .insert(index, state);
            }
        }
        Ok(())
    }

    fn complete(&mut self, id: u64, pending: Pending) -> anyhow::Result<()> {
        let tmp = self.dir.join(format!("{}.tmp", name(id)));
        let started = pending.started.unwrap_or_else(Instant::now);
        let manifest = Manifest {
            id,
            created_ms: crate::source::now_ms(),
            config: self.config.clone(),
            workers: self.workers,
            partitions: pending.marks.unwrap_or_default(),
            sinks: pending.sinks.into_values().collect(),
            bytes: pending.bytes,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        write_synced(
            &tmp.join(MANIFEST),
            &serde_json::to_vec_pretty(&manifest).context("encoding the manifest")?,
        )?;
        let done = self.dir.join(name(id));
        std::fs::rename(&tmp, &done).with_context(|| format!("completing {}", done.display()))?;
        sync_dir(&self.dir)?;
        if let Ok(mut stats) = self.stats.lock() {
            stats.completed += 1;
            stats.last_id = Some(id);
            stats.last_bytes = manifest.bytes;
            stats.max_duration = stats.max_duration.max(started.elapsed());
            stats.last_at = Some(Instant::now());
            stats.last_duration = started.elapsed();
        }
        tracing::info!(
            "checkpoint {id}: {} bytes in {} ms",
            manifest.bytes,
            manifest.duration_ms
        );
        self.prune()
    }

    /// Removes checkpoints older than the retention, always keeping the newest.
    fn prune(&self) -> anyhow::Result<()> {
        let now = crate::source::now_ms();
        let mut found = manifests(&self.dir, false)?;
        found.pop();
        for (path, manifest) in found {
            if now.saturating_sub(manifest.created_ms) as u128 > self.retention.as_millis() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("pruning {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Makes `dir`'s entries durable: a file created or renamed there is only
/// found after a crash once its directory is synced too.
pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to `path` and makes them durable before returning.
fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Fingerprint {
        Fingerprint {
            source: "file:/orders.jsonl".into(),
            intervals: vec!["1m".into()],
            lateness_ms: 5_000,
            out_of_orderness_ms: 2_000,
            sinks: vec!["dir:out".into()],
            outputs: vec!["trades".into()],
        }
    }

    #[test]
    fn a_checkpoint_completes_only_with_every_part_and_resumes() {
        let dir = std::env::temp_dir().join(format!("orderflow-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = Settings {
            dir: dir.clone(),
            interval: Duration::from_secs(1),
            retention: Duration::from_secs(3600),
        };
        assert!(load(&dir, &config()).unwrap().is_none());
        let checkpointer = Checkpointer::start(&settings, config(), 1, 1).unwrap();
        let mark = PartitionMark {
            partition: 0,
            watermark: 7,
            next_offset: 10,
            next_byte: 123,
            state: Default::default(),
        };
        checkpointer.snapshot(1, 0, Snapshot::Books(Vec::new()));
        checkpointer.snapshot(
            1,
            0,
            Snapshot::Windows {
                windows: Vec::new(),
                marks: vec![mark],
            },
        );
        // Checkpoint 2 never gets its sink's part: it must not count.
        checkpointer.snapshot(2, 0, Snapshot::Books(Vec::new()));
        checkpointer.committed(1, 0, SinkState::Delivered);
        let stats = checkpointer.finish().unwrap();
        assert_eq!(stats.last_id, Some(1));
        let resume = load(&dir, &config()).unwrap().expect("checkpoint 1");
        assert_eq!(resume.manifest.id, 1);
        assert_eq!(resume.manifest.partitions, vec![mark]);
        assert!(
            !dir.join(format!("{}.tmp", name(2))).exists(),
            "unfinished removed"
        );
        let mut other = config();
        other.intervals = vec!["5m".into()];
        let refused = load(&dir, &other).err().expect("refused").to_string();
        assert!(refused.contains("--intervals was 1m, now 5m"), "{refused}");
        // A replay (which may write other outputs) with the views, from a
        // checkpoint without them: their positions would start empty.
        let mut replay = config();
        replay.outputs.push("exposure".into());
        let refused = load_before(&dir, &replay, &[(0, 10)])
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("written without the views"), "{refused}");
        replay.outputs = vec!["candles".into()];
        assert!(load_before(&dir, &replay, &[(0, 10)]).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
