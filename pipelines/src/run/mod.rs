//! `orderflow run`: sources → books → candles → sinks on timely workers.
//! Here the run is set up (checkpoint loaded, sinks opened, workers
//! started, summary printed) and each worker's loop; the worker's reading
//! is in [`reading`], its sink operator in [`sinks`].

mod reading;
mod sinks;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use operators::dataflow::{owner, Books, Candles, Control, Restored, Time};
use operators::output::{OUTPUTS, VIEWS};
use operators::partition::Sequenced;
use operators::views::{ViewSpec, Views};
use operators::window::CandleSpec;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::checkpoint::{self, Checkpointer, Fingerprint};
use crate::cli::{ReplayArgs, RunArgs};
use crate::latency::Latency;
use crate::progress::{Counters, Progress};
use crate::serve::hub::{Hub, Publisher};
use crate::serve::{self, Watch, WatchedSink};
use crate::sink::{self, Sink, SinkSettings, WorkerInfo};
use crate::source::kafka::StartAt;
use crate::source::Pace;
use crate::source::SourceSpec;
use reading::Reading;
use sinks::{Barriers, Failure, SinkWriter};

/// Batches a worker may run ahead of its slowest downstream operator: enough
/// to keep every worker busy, few enough to bound memory.
const BATCHES_IN_FLIGHT: usize = 4;
/// How often a worker with nothing to read moves its inputs on.
const IDLE_ADVANCE: Duration = Duration::from_millis(5);
/// Where every worker moves its inputs when it stops: past any time a
/// worker used, so the last checkpoint, taken here, covers everything read.
const FINAL: Time = Time::MAX / 2;

/// The CPU slice a worker thread asks the kernel for. Linux's scheduler
/// (EEVDF, with per-thread slices since 6.12) lets a woken thread run at once
/// only if its slice ends before the running thread's: with the default
/// slice of a few milliseconds, a worker woken by its peer's progress waited
/// behind a sink writer's Parquet or file work for up to that long, and
/// every batch in flight on both workers waited with it. Those waits were
/// most of the paced latency's p99; a short slice lets the worker go first.
/// 0.1 ms is the kernel's floor.
const WORKER_SLICE: Duration = Duration::from_micros(100);

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
    /// The differential views, when one of their outputs is written.
    views: Option<ViewSpec>,
    pace: Option<Pace>,
    /// When the run started: batch times count clock ticks from here, so
    /// that the workers' ticks line up (a worker whose clock lagged its
    /// peer's held the peer's batches back until it caught up).
    started: Instant,
    latency: Arc<Latency>,
    /// What `--serve` reads and the hub the workers publish to.
    watch: Option<Arc<Watch>>,
}

/// What the workers of a checkpointed run share.
struct Checkpoints {
    checkpointer: Arc<Checkpointer>,
    interval: Duration,
    /// The id of the first checkpoint (after the one resumed from).
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
    // The views hold state, not a range of time: a replay's rows of them
    // would be a second history of every key, cut at other turns than the
    // run's (harmless to the latest row per key, which stays the run's
    // final state, but rows the run never wrote). Only a replay told to
    // writes them.
    run.no_views |= run.outputs.is_none();
    run.kafka.start = from;
    run.kafka.stop = Some(to);
    execute(run, Some(checkpoints))
}

/// A run; `replay` names the checkpoints a replay starts from.
fn execute(args: RunArgs, replay: Option<PathBuf>) -> anyhow::Result<()> {
    if args.rate.is_some() && args.source.starts_with("kafka:") {
        bail!("--rate paces the gen and file: sources; a Kafka source goes at its topic's pace");
    }
    let mut source = SourceSpec::parse(&args.source, &args.gen, args.kafka.read())?;
    let config = args.cluster.timely_config()?;
    let workers = args.cluster.workers;
    let fingerprint = Fingerprint {
        source: source.fingerprint(),
        intervals: args.intervals.iter().map(ToString::to_string).collect(),
        lateness_ms: args.lateness.0,
        out_of_orderness_ms: args.out_of_orderness.0,
        sinks: args.sinks.iter().map(|s| s.text.clone()).collect(),
        outputs: OUTPUTS
            .iter()
            .zip(args.outputs())
            .filter(|(_, on)| *on)
            .map(|(o, _)| o.name.to_string())
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
    let latency = Arc::new(Latency::default());
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
        outputs: args.outputs(),
        views: VIEWS
            .iter()
            .any(|v| args.outputs()[OUTPUTS.iter().position(|o| o == v).unwrap_or(0)])
            .then_some(ViewSpec {
                depth: args.depth as usize,
                every: Duration::from_millis(args.view_interval.0 as u64),
            }),
        pace: args.rate.map(|rate| Pace {
            rate: rate as f64,
            started,
        }),
        started,
        latency: Arc::clone(&latency),
        watch: args.serve.map(|_| {
            Arc::new(Watch {
                hub: Arc::new(Hub::new()),
                counters: Arc::clone(&counters),
                latency: Arc::clone(&latency),
                sinks: args
                    .sinks
                    .iter()
                    .zip(&sinks)
                    .map(|(spec, sink)| WatchedSink {
                        kind: spec.kind.name(),
                        sink: Arc::clone(sink),
                    })
                    .collect(),
                workers,
                partitions: Mutex::default(),
                opened: AtomicUsize::new(0),
                checkpointer: checkpointer.clone(),
                intervals: args.intervals.clone(),
            })
        }),
    });
    let server = match (&job.watch, args.serve) {
        (Some(watch), Some(address)) => {
            let server = serve::start(address, Arc::clone(watch))?;
            eprintln!("serving http://{}", server.address);
            Some(server)
        }
        _ => None,
    };
    let views = job.views.is_some();
    let guards = timely::execute(config, move |worker| work(worker, &job))
        .map_err(|e| anyhow!("starting workers: {e}"))?;
    let outcomes = guards.join();
    drop(progress);
    drop(server);
    let closed: Vec<_> = sinks.iter().map(|s| s.close()).collect();
    let checkpointed = checkpointer.map(|c| c.finish()).transpose();
    for outcome in outcomes {
        outcome.map_err(|e| anyhow!("a worker failed: {e}"))??;
    }
    closed.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!("{}", counters.summary(started.elapsed()));
    if let Some(latency) = latency.summary() {
        println!("{latency}");
    }
    if let Some(dir) = &replay {
        let from = match &resumed {
            Some(m) => format!("checkpoint {} in {}", m.id, dir.display()),
            None => "the topic's start (no checkpoint before --from)".into(),
        };
        let views = match views {
            true => "",
            false => " · views left out (--outputs names them)",
        };
        println!("replay: from {from} · read {ranges}{views}");
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

/// One worker: builds the dataflow around its sources and sinks, then
/// reads, asks for checkpoints (worker 0) and steps until the input ends
/// or the run stops.
fn work(worker: &mut timely::worker::Worker, job: &Job) -> anyhow::Result<()> {
    ask_for_slice(WORKER_SLICE);
    let (index, peers) = (worker.index(), worker.peers());
    let restored = &job.restored;
    let sources = job.source.open(
        index,
        peers,
        job.out_of_orderness,
        &job.counters,
        &restored.marks,
    )?;
    let mut reading = Reading::new(
        sources,
        job.batch,
        job.idle_timeout,
        job.replay,
        job.pace,
        job.started,
        Arc::clone(&job.latency),
    );
    let info = WorkerInfo {
        index,
        watermark: Rc::default(),
    };
    let watermark = Rc::clone(&info.watermark);
    let failure: Failure = Rc::default();
    // Checkpoints whose snapshots this worker took: its sinks commit each
    // once their input has passed its time.
    let barriers: Barriers = Rc::default();
    let mut handles = job
        .sinks
        .iter()
        .map(|s| s.handle(&info))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(watch) = &job.watch {
        handles.push(Box::new(Publisher::new(Arc::clone(&watch.hub))));
        watch.opened.fetch_add(1, Ordering::Relaxed);
    }
    let writer = SinkWriter {
        handles,
        barriers: Rc::clone(&barriers),
        failure: Rc::clone(&failure),
        counters: Arc::clone(&job.counters),
        outputs: job.outputs,
        latency: job.latency.recorder(),
    };

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
    // The books see a checkpoint's time before any record of a later time
    // exists: there its barrier is set, ahead of everything it must cut.
    let on_books = snapshots(job, index, Some(barriers));
    let on_windows = snapshots(job, index, None);
    let mut orders: InputHandleVec<Time, Sequenced> = InputHandleVec::new();
    let mut control: InputHandleVec<Time, Control> = InputHandleVec::new();
    // Everything, for the sources' commits; and the books' and candles'
    // records alone, for the flow: the views lag by design (their rows go
    // out every `--view-interval`), and a worker that waited for them
    // would stop reading, so that no later batch replaces the capability
    // they hold, until every group of symbols has had its turn.
    let probe = ProbeHandle::new();
    let flow = ProbeHandle::new();
    let spec = job.candles.clone();
    // Windows still open when the input ends close, unless a later run (a
    // resume) or the original one (a replay) goes on from here.
    let close_at_end = job.checkpoints.is_none() && !job.replay;
    let views = job.views;
    worker.dataflow::<Time, _, _>(|scope| {
        let control = control.to_stream(scope).broadcast();
        let books = orders
            .to_stream(scope)
            .books(control.clone(), books, on_books, views);
        let candles = books
            .trades
            .candles(control, spec, windows, on_windows, close_at_end);
        let records = books.records.concat(candles).probe_with(&flow);
        let records = match views {
            Some(spec) => records.concat(books.changes.views(spec)),
            None => records,
        }
        .probe_with(&probe);
        writer.attach(records);
    });

    let mut time: Time = 0;
    // The times of this worker's batches still in the dataflow.
    let mut in_flight: VecDeque<Time> = VecDeque::new();
    let mut advanced = Instant::now();
    let mut requests = job.checkpoints.as_ref().map(Requests::new);
    while reading.open() && !job.stop.load(Ordering::Relaxed) && failure.borrow().is_none() {
        let mut progressed = match reading.poll(time, &mut orders, &mut control) {
            Ok(progressed) => progressed,
            Err(e) => {
                // Stop reading, but let the dataflow finish so every worker
                // ends and the sinks keep what was done.
                failure.borrow_mut().get_or_insert(e);
                true
            }
        };
        // Worker 0 asks for checkpoints, one at a time.
        if let Some(requests) = requests.as_mut().filter(|_| index == 0) {
            match requests.due(&mut control) {
                Ok(asked) => progressed |= asked,
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e);
                }
            }
        }
        // Kept once all partitions have ended: the last watermark stands.
        if let Some(lowest) = reading.watermark() {
            watermark.set(Some(lowest));
        }
        if let Some(watch) = &job.watch {
            reading.report(&watch.partitions);
        }
        // A worker whose partitions are quiet still moves its inputs on once
        // the dataflow has caught up with it: the frontier is the minimum
        // over all workers, so one idle Kafka partition must not hold back
        // the books and candles fed by the others. Paced, so that idle
        // workers do not wake each other in a busy loop.
        if progressed || !flow.less_than(&time) && advanced.elapsed() >= IDLE_ADVANCE {
            advanced = Instant::now();
            if progressed {
                in_flight.push_back(time);
            }
            time = reading.clock().max(time + 1);
            orders.advance_to(time);
            control.advance_to(time);
        }
        // Run the dataflow; wait while the source is too far ahead of it.
        // Paced, a worker wakes when its next message is due.
        let rest = reading
            .pace
            .as_ref()
            .map_or(Duration::from_millis(5), Pace::rest);
        let rest = reading.gathered_in().unwrap_or(rest);
        worker.step_or_park(Some(if progressed { Duration::ZERO } else { rest }));
        loop {
            while in_flight.front().is_some_and(|t| !flow.less_equal(t)) {
                in_flight.pop_front();
            }
            if in_flight.len() <= BATCHES_IN_FLIGHT {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        reading.processed(&probe);
    }
    // The last checkpoint, after everything every worker read, unless the
    // run failed: then the one before stands.
    orders.advance_to(FINAL);
    control.advance_to(FINAL);
    if let Some(requests) = requests.as_mut().filter(|_| index == 0) {
        if failure.borrow().is_none() {
            requests.ask(&mut control);
        }
    }
    drop(orders);
    drop(control);
    while worker.step_or_park(None) {}
    reading.close();
    match failure.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Asks the kernel to schedule the calling thread in slices of `slice`,
/// keeping its policy and nice value. A hint for latency, not a need: where
/// the kernel has no such setting the thread runs as before.
#[cfg(target_os = "linux")]
fn ask_for_slice(slice: Duration) {
    // SAFETY: `getpriority` and `sched_setattr` only read their arguments,
    // and the attributes are a whole `sched_attr` of the size they state.
    let set = unsafe {
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: libc::getpriority(libc::PRIO_PROCESS, 0),
            sched_priority: 0,
            sched_runtime: slice.as_nanos() as u64,
            sched_deadline: 0,
            sched_period: 0,
        };
        libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0)
    };
    if set != 0 {
        tracing::debug!(
            "a worker's slice of {slice:?}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn ask_for_slice(_slice: Duration) {}

/// Worker 0's asking for checkpoints: every interval, one at a time.
struct Requests<'a> {
    checkpoints: &'a Checkpoints,
    next: u64,
    last: Instant,
}

impl Requests<'_> {
    fn new(checkpoints: &Checkpoints) -> Requests<'_> {
        Requests {
            checkpoints,
            next: checkpoints.next,
            last: Instant::now(),
        }
    }

    /// Asks for the next checkpoint once the interval has passed and the
    /// last one is written; whether it asked.
    fn due(&mut self, control: &mut InputHandleVec<Time, Control>) -> anyhow::Result<bool> {
        let checkpointer = &self.checkpoints.checkpointer;
        if checkpointer.failed() {
            bail!("writing a checkpoint failed");
        }
        let due = self.last.elapsed() >= self.checkpoints.interval && checkpointer.idle();
        if due {
            self.ask(control);
        }
        Ok(due)
    }

    /// Asks for a checkpoint at the control input's current time.
    fn ask(&mut self, control: &mut InputHandleVec<Time, Control>) {
        control.send(Control::Checkpoint(self.next));
        self.checkpoints.checkpointer.requested(self.next);
        self.next += 1;
        self.last = Instant::now();
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
