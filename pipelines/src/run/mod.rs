//! `orderflow run`: sources → books → candles → sinks on timely workers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use operators::dataflow::{owner, Books, Candles, Control, PartitionMark, Restored, Time, OUTPUTS};
use operators::partition::Sequenced;
use operators::window::CandleSpec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::checkpoint::{self, Checkpointer, Fingerprint};
use crate::cli::{ReplayArgs, RunArgs};
use crate::progress::{Counters, Progress};
use crate::sink::{self, Sink, SinkHandle, SinkSettings, WorkerInfo};
use crate::source::kafka::StartAt;
use crate::source::{Poll, SourceSpec};

/// Batches a worker may run ahead of its slowest downstream operator: enough
/// to keep every worker busy, few enough to bound memory.
const BATCHES_IN_FLIGHT: u64 = 4;
/// How often a worker with nothing to read moves its inputs on.
const IDLE_ADVANCE: Duration = Duration::from_millis(5);
/// Where every worker moves its inputs when it stops: past any time a
/// worker used, so the last checkpoint, taken here, covers everything read.
const FINAL: Time = Time::MAX / 2;

/// What every worker needs, shared across worker threads.
struct Job {
    source: SourceSpec,
    sinks: Vec<Arc<dyn Sink>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    candles: CandleSpec,
    out_of_orderness: i64,
    idle_timeout: i64,
    batch: usize,
    /// The state to start from; each worker keeps what it owns.
    restored: Restored,
    checkpoints: Option<Checkpoints>,
    /// A replay: its partitions end where its range does, not where their
    /// input does.
    replay: bool,
    /// Which outputs the sinks write, by index.
    outputs: [bool; OUTPUTS.len()],
}

/// Checkpoints a worker's operators have snapshotted, as (time, id), that
/// its sinks have still to pass.
type Barriers = Rc<RefCell<VecDeque<(Time, u64)>>>;

/// What the workers of a checkpointed run share.
struct Checkpoints {
    checkpointer: Arc<Checkpointer>,
    interval: Duration,
    /// The id of the next checkpoint (after the one resumed from).
    next: u64,
}

/// `orderflow run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    execute(args, None)
}

/// `orderflow replay`: a bounded Kafka run from the newest checkpoint at or
/// before `--from` to `--to`, writing no checkpoint of its own.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplayArgs { from, to, mut run } = args;
    let Some(checkpoints) = run.checkpoint.take() else {
        bail!(
            "replay needs --checkpoint DIR: the checkpoints of the run whose input it re-derives"
        );
    };
    if !run.source.starts_with("kafka://") {
        bail!("replay re-reads a Kafka topic: give --source kafka://HOST:PORT/TOPIC");
    }
    if run.kafka.start != StartAt::Earliest || run.kafka.stop.is_some() {
        bail!("replay reads from --from to --to: leave out --start and --stop");
    }
    if matches!(from, StartAt::Latest | StartAt::Committed) {
        bail!("--from is earliest, timestamp:MS or offsets:P=O,…");
    }
    run.kafka.start = from;
    run.kafka.stop = Some(to);
    execute(run, Some(checkpoints))
}

/// A run; `replay` names the checkpoints a replay starts from.
fn execute(args: RunArgs, replay: Option<PathBuf>) -> anyhow::Result<()> {
    let mut source = SourceSpec::parse(&args.source, &args.gen, args.kafka.read())?;
    let config = args.cluster.timely_config()?;
    let workers = args.cluster.workers;
    let fingerprint = Fingerprint {
        source: source.fingerprint(),
        intervals: args.intervals.iter().map(ToString::to_string).collect(),
        lateness_ms: args.lateness.0,
        out_of_orderness_ms: args.out_of_orderness.0,
        sinks: args.sinks.clone(),
        outputs: args
            .outputs
            .iter()
            .map(|o| OUTPUTS[*o].to_string())
            .collect(),
    };
    if (args.checkpoint.is_some() || replay.is_some()) && args.cluster.processes > 1 {
        bail!("checkpoints keep a run's state in one local directory: run one process (--workers N for more threads)");
    }
    let resume = match (&replay, &args.checkpoint) {
        (Some(dir), _) => match (&args.kafka.start, &source) {
            (StartAt::Earliest, _) => None,
            (_, SourceSpec::Kafka(kafka)) => {
                checkpoint::load_before(dir, &fingerprint, &kafka.starts())?
            }
            _ => None,
        },
        (None, Some(dir)) => {
            if matches!(source, SourceSpec::File(None)) {
                bail!("--checkpoint needs a source that can be read again: stdin cannot; give file:PATH or kafka://");
            }
            checkpoint::load(dir, &fingerprint)?
        }
        (None, None) => None,
    };
    // A Kafka source starts where the state it resumes left off, or (a
    // replay with no checkpoint before it) at the topic's start.
    if matches!(source, SourceSpec::Kafka(_)) && (resume.is_some() || replay.is_some()) {
        let mut read = args.kafka.read();
        read.start = match &resume {
            Some(r) => StartAt::Offsets(
                r.manifest
                    .partitions
                    .iter()
                    .map(|m| (m.partition as i32, m.next_offset as i64))
                    .collect(),
            ),
            None => StartAt::Earliest,
        };
        source = SourceSpec::parse(&args.source, &args.gen, read)?;
    }
    let resumed = resume.as_ref().map(|r| r.manifest.clone());
    let checkpoints = match (&replay, &args.checkpoint) {
        (None, Some(dir)) => {
            let settings = checkpoint::Settings {
                dir: dir.clone(),
                interval: Duration::from_millis(args.checkpoint_interval.0 as u64),
                retention: Duration::from_millis(args.checkpoint_retention.0 as u64),
            };
            Some(Checkpoints {
                checkpointer: Checkpointer::start(
                    &settings,
                    fingerprint,
                    workers,
                    args.sinks.len(),
                )?,
                interval: settings.interval,
                next: resumed.as_ref().map_or(1, |m| m.id + 1),
            })
        }
        _ => None,
    };
    let restored = resume.map(|r| r.restored).unwrap_or_default();
    let sinks = sink::open(
        &args.sinks,
        &SinkSettings {
            process: args.cluster.process,
            workers,
            checkpointer: checkpoints.as_ref().map(|c| &c.checkpointer),
            // A replay's sinks take what it derives afresh.
            restore: resumed
                .as_ref()
                .filter(|_| replay.is_none())
                .map(|m| (m.id, m.sinks.as_slice())),
            kafka_options: &args.kafka.client.options,
            create_tables: !args.no_create,
        },
    )?;
    let checkpointer = checkpoints.as_ref().map(|c| Arc::clone(&c.checkpointer));
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    // Ctrl-C and SIGTERM alike; a second one while stopping exits at once.
    ctrlc::set_handler(move || {
        if on_signal.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("stopping: finishing open work and flushing sinks (Ctrl-C again to abort)");
    })
    .context("installing the signal handler")?;

    let ranges = match &source {
        SourceSpec::Kafka(kafka) => kafka.ranges(),
        _ => String::new(),
    };
    let first = args.cluster.process * workers;
    let (messages, bytes) = source.size(first..first + workers, workers * args.cluster.processes);
    let progress = Progress::start(Arc::clone(&counters), messages, bytes, args.quiet);
    let started = Instant::now();
    let job = Arc::new(Job {
        source,
        sinks: sinks.clone(),
        counters: Arc::clone(&counters),
        stop,
        candles: CandleSpec {
            intervals: args.intervals.clone(),
            lateness: args.lateness.0,
        },
        out_of_orderness: args.out_of_orderness.0,
        idle_timeout: args.idle_timeout.0,
        batch: args.batch.max(1),
        restored,
        replay: replay.is_some(),
        checkpoints,
        outputs: std::array::from_fn(|i| args.outputs.contains(&i)),
    });
    let guards = timely::execute(config, move |worker| work(worker, &job))
        .map_err(|e| anyhow!("starting workers: {e}"))?;
    let outcomes = guards.join();
    drop(progress);
    let closed: Vec<_> = sinks.iter().map(|s| s.close()).collect();
    let checkpointed = checkpointer.map(|c| c.finish()).transpose();
    for outcome in outcomes {
        outcome.map_err(|e| anyhow!("a worker failed: {e}"))??;
    }
    closed.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!("{}", counters.summary(started.elapsed()));
    if let Some(dir) = &replay {
        let from = match &resumed {
            Some(m) => format!("checkpoint {} in {}", m.id, dir.display()),
            None => "the topic's start (no checkpoint before --from)".into(),
        };
        println!("replay: from {from} · read {}", ranges);
    }
    if let Some(stats) = checkpointed? {
        let from = match &resumed {
            Some(m) => format!("resumed from checkpoint {}", m.id),
            None => "started afresh".into(),
        };
        println!(
            "checkpoints: {from} · {} taken, the last {} ({} KiB, slowest {} ms)",
            stats.completed,
            stats.last_id.map_or("none".into(), |id| id.to_string()),
            stats.last_bytes / 1024,
            stats.max_duration.as_millis()
        );
    }
    Ok(())
}

fn work(worker: &mut timely::worker::Worker, job: &Job) -> anyhow::Result<()> {
    let (index, peers) = (worker.index(), worker.peers());
    let restored = &job.restored;
    let mut sources = job.source.open(
        index,
        peers,
        job.out_of_orderness,
        &job.counters,
        &restored.marks,
    )?;
    let info = WorkerInfo {
        index,
        watermark: Rc::default(),
    };
    let watermark = Rc::clone(&info.watermark);
    let mut handles = job
        .sinks
        .iter()
        .map(|s| s.handle(&info))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The sink operator cannot return errors; it parks the first one here.
    let failure: Rc<RefCell<Option<anyhow::Error>>> = Rc::default();
    let sink_failure = Rc::clone(&failure);
    let counters = Arc::clone(&job.counters);
    let outputs = job.outputs;

    // This worker's share of the state resumed from: the books it owns;
    // the candle operator keeps the windows of its symbols itself.
    let books = restored
        .books
        .iter()
        .filter(|b| owner(&b.symbol, peers) == index)
        .cloned()
        .collect();
    let windows = Restored {
        books: Vec::new(),
        windows: restored.windows.clone(),
        marks: restored.marks.clone(),
    };
    // Checkpoints whose snapshots this worker took: its sinks commit each
    // once their input has passed its time.
    let barriers: Barriers = Rc::default();
    let on_books = snapshots(job, index, None);
    let on_windows = snapshots(job, index, Some(Rc::clone(&barriers)));
    let mut orders: InputHandleVec<Time, Sequenced> = InputHandleVec::new();
    let mut control: InputHandleVec<Time, Control> = InputHandleVec::new();
    let probe = ProbeHandle::new();
    let spec = job.candles.clone();
    // Windows still open when the input ends close, unless a later run (a
    // resume) or the original one (a replay) goes on from here.
    let close_at_end = job.checkpoints.is_none() && !job.replay;
    worker.dataflow::<Time, _, _>(|scope| {
        let control = control.to_stream(scope).broadcast();
        orders
            .to_stream(scope)
            .books(control.clone(), books, on_books)
            .candles(control, spec, windows, on_windows, close_at_end)
            .probe_with(&probe)
            .sink(Pipeline, "Sinks", move |(input, frontier)| {
                input.for_each(|cap, records| {
                    // Records come in time order: one of a later time means
                    // every earlier checkpoint's records have been written.
                    if let Some(&time) = cap.least() {
                        pass_barriers(&mut handles, &barriers, &sink_failure, |t| t < time);
                    }
                    for record in records.drain(..) {
                        counters.count(&record);
                        if !outputs[record.output()] {
                            continue;
                        }
                        for handle in handles.iter_mut() {
                            if let Err(e) = handle.write(&record) {
                                sink_failure.borrow_mut().get_or_insert(e);
                            }
                        }
                    }
                });
                // Hand over what is due, so that sinks see rows with the
                // latency of a step (or of their flush period) rather than
                // of a full buffer.
                for handle in handles.iter_mut() {
                    if let Err(e) = handle.flush() {
                        sink_failure.borrow_mut().get_or_insert(e);
                    }
                }
                pass_barriers(&mut handles, &barriers, &sink_failure, |t| {
                    !frontier.less_equal(&t)
                });
                if frontier.is_empty() {
                    handles.clear();
                }
            });
    });

    let mut batch: Vec<Sequenced> = Vec::with_capacity(job.batch);
    let mut sent_marks: Vec<i64> = vec![i64::MIN; sources.len()];
    let mut last_data: Vec<Instant> = vec![Instant::now(); sources.len()];
    let mut open: Vec<bool> = vec![true; sources.len()];
    let mut time: Time = 0;
    let mut advanced = Instant::now();
    let mut next_checkpoint = job.checkpoints.as_ref().map_or(1, |c| c.next);
    let mut last_checkpoint = Instant::now();
    // (time, source, offset after the batch) for batches still in the dataflow.
    let mut in_flight: VecDeque<(Time, usize, u64)> = VecDeque::new();
    while open.iter().any(|o| *o) && !job.stop.load(Ordering::Relaxed) && failure.borrow().is_none()
    {
        let mut progressed = false;
        for (i, source) in sources.iter_mut().enumerate() {
            if !open[i] {
                continue;
            }
            let polled = match source.poll(job.batch, &mut batch) {
                Ok(polled) => polled,
                Err(e) => {
                    // Stop reading, but let the dataflow finish so every
                    // worker ends and the sinks keep what was done.
                    failure.borrow_mut().get_or_insert(e);
                    break;
                }
            };
            let ready = polled == Poll::Ready;
            match polled {
                Poll::Ready => {
                    last_data[i] = Instant::now();
                    in_flight.push_back((time, i, source.position().0));
                    orders.send_batch(&mut batch);
                    batch.clear();
                    progressed = true;
                }
                Poll::Idle => {
                    let idle = last_data[i].elapsed().as_millis() as i64;
                    source.reader().idle(idle, job.idle_timeout);
                }
                Poll::Ended => open[i] = false,
            }
            let watermark = match open[i] {
                true => source.reader().watermark(),
                // The end of a bounded input closes its windows; the end
                // of a replayed range does not: the input goes on.
                false if !job.replay => i64::MAX,
                false => source.reader().watermark(),
            };
            // Every batch is marked, so that a checkpoint knows where each
            // partition stands.
            if ready || watermark != sent_marks[i] {
                sent_marks[i] = watermark;
                let (next_offset, next_byte) = source.position();
                let reader = source.reader();
                control.send(Control::Mark(PartitionMark {
                    partition: reader.partition(),
                    watermark,
                    next_offset,
                    next_byte,
                    state: reader.state(),
                }));
                progressed = true;
            }
        }
        // Worker 0 asks for checkpoints, one at a time.
        if let Some(checkpoints) = job.checkpoints.as_ref().filter(|_| index == 0) {
            if last_checkpoint.elapsed() >= checkpoints.interval && checkpoints.checkpointer.idle()
            {
                control.send(Control::Checkpoint(next_checkpoint));
                checkpoints.checkpointer.requested(next_checkpoint);
                next_checkpoint += 1;
                last_checkpoint = Instant::now();
                progressed = true;
            }
            if checkpoints.checkpointer.failed() {
                failure
                    .borrow_mut()
                    .get_or_insert(anyhow!("writing a checkpoint failed"));
            }
        }
        // Kept once all partitions have ended: the last watermark stands.
        if let Some(lowest) = (0..sources.len())
            .filter(|&i| open[i] && sent_marks[i] != i64::MIN)
            .map(|i| sent_marks[i])
            .min()
        {
            watermark.set(Some(lowest));
        }
        // A worker whose partitions are quiet still moves its inputs on once
        // the dataflow has caught up with it: the frontier is the minimum
        // over all workers, so one idle Kafka partition must not hold back
        // the books and candles fed by the others. Paced, so that idle
        // workers do not wake each other in a busy loop.
        if progressed || !probe.less_than(&time) && advanced.elapsed() >= IDLE_ADVANCE {
            advanced = Instant::now();
            time += 1;
            orders.advance_to(time);
            control.advance_to(time);
        }
        // Run the dataflow; wait while the source is too far ahead of it.
        worker.step_or_park(Some(if progressed {
            Duration::ZERO
        } else {
            Duration::from_millis(5)
        }));
        while probe.less_than(&time.saturating_sub(BATCHES_IN_FLIGHT)) {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        while let Some(&(at, i, next)) = in_flight.front() {
            if probe.less_equal(&at) {
                break;
            }
            sources[i].processed(next);
            in_flight.pop_front();
        }
    }
    // The last checkpoint, after everything every worker read, unless the
    // run failed: then the one before stands.
    orders.advance_to(FINAL);
    control.advance_to(FINAL);
    if let Some(checkpoints) = job.checkpoints.as_ref().filter(|_| index == 0) {
        if failure.borrow().is_none() {
            control.send(Control::Checkpoint(next_checkpoint));
            checkpoints.checkpointer.requested(next_checkpoint);
        }
    }
    drop(orders);
    drop(control);
    while worker.step_or_park(None) {}
    for source in sources.iter_mut() {
        source.close();
    }
    match failure.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Tells the sinks of every checkpoint in `due` whose time is `complete`
/// that their rows up to it are all written.
fn pass_barriers(
    handles: &mut [Box<dyn SinkHandle>],
    due: &Barriers,
    failure: &RefCell<Option<anyhow::Error>>,
    complete: impl Fn(Time) -> bool,
) {
    let mut due = due.borrow_mut();
    while let Some(&(time, id)) = due.front() {
        if !complete(time) {
            break;
        }
        for handle in handles.iter_mut() {
            if let Err(e) = handle.barrier(id) {
                failure.borrow_mut().get_or_insert(e);
            }
        }
        due.pop_front();
    }
}

/// Where an operator of worker `index` hands its snapshots: to the
/// checkpointer, and (for the last operator) the checkpoint's time to the
/// worker's sinks through `barriers`.
fn snapshots(
    job: &Job,
    index: usize,
    barriers: Option<Barriers>,
) -> operators::dataflow::OnSnapshot {
    let checkpointer = job
        .checkpoints
        .as_ref()
        .map(|c| Arc::clone(&c.checkpointer));
    Box::new(move |time, id, snapshot| {
        if let Some(checkpointer) = &checkpointer {
            checkpointer.snapshot(id, index, snapshot);
        }
        if let Some(barriers) = &barriers {
            barriers.borrow_mut().push_back((time, id));
        }
    })
}
