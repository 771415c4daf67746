//! `orderflow run`: sources → books → candles → sinks on timely workers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use operators::dataflow::{Books, Candles, PartitionMark, Time};
use operators::partition::Sequenced;
use operators::window::CandleSpec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::cli::RunArgs;
use crate::progress::{Counters, Progress};
use crate::sink::{self, Sink, SinkSettings, WorkerInfo};
use crate::source::{Poll, SourceSpec};

/// Batches a worker may run ahead of its slowest downstream operator: enough
/// to keep every worker busy, few enough to bound memory.
const BATCHES_IN_FLIGHT: u64 = 4;
/// How often a worker with nothing to read moves its inputs on.
const IDLE_ADVANCE: Duration = Duration::from_millis(5);

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
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let source = SourceSpec::parse(&args.source, &args.gen, args.kafka.read())?;
    let config = args.cluster.timely_config()?;
    let sinks = sink::open(
        &args.sinks,
        &SinkSettings {
            process: args.cluster.process,
            kafka_options: &args.kafka.client.options,
            create_tables: !args.no_create,
        },
    )?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let on_interrupt = Arc::clone(&stop);
    // A second Ctrl-C while stopping exits at once.
    ctrlc::set_handler(move || {
        if on_interrupt.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("stopping: finishing open work and flushing sinks (Ctrl-C again to abort)");
    })
    .context("installing the Ctrl-C handler")?;

    let workers = args.cluster.workers;
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
    });
    let guards = timely::execute(config, move |worker| work(worker, &job))
        .map_err(|e| anyhow!("starting workers: {e}"))?;
    let outcomes = guards.join();
    drop(progress);
    let closed: Vec<_> = sinks.iter().map(|s| s.close()).collect();
    for outcome in outcomes {
        outcome.map_err(|e| anyhow!("a worker failed: {e}"))??;
    }
    closed.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!("{}", counters.summary(started.elapsed()));
    Ok(())
}

fn work(worker: &mut timely::worker::Worker, job: &Job) -> anyhow::Result<()> {
    let (index, peers) = (worker.index(), worker.peers());
    let mut sources = job
        .source
        .open(index, peers, job.out_of_orderness, &job.counters)?;
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

    let mut orders: InputHandleVec<Time, Sequenced> = InputHandleVec::new();
    let mut marks: InputHandleVec<Time, PartitionMark> = InputHandleVec::new();
    let probe = ProbeHandle::new();
    let spec = job.candles.clone();
    worker.dataflow::<Time, _, _>(|scope| {
        let marks = marks.to_stream(scope).broadcast();
        orders
            .to_stream(scope)
            .books()
            .candles(marks, spec)
            .probe_with(&probe)
            .sink(Pipeline, "Sinks", move |(input, frontier)| {
                input.for_each(|_, records| {
                    for record in records.drain(..) {
                        counters.count(&record);
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
            match polled {
                Poll::Ready => {
                    last_data[i] = Instant::now();
                    if let Some(last) = batch.last() {
                        in_flight.push_back((time, i, last.offset + 1));
                    }
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
                false => i64::MAX,
            };
            if watermark != sent_marks[i] {
                sent_marks[i] = watermark;
                marks.send(PartitionMark {
                    partition: source.reader().partition(),
                    watermark,
                });
                progressed = true;
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
            marks.advance_to(time);
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
    drop(orders);
    drop(marks);
    while worker.step_or_park(None) {}
    for source in sources.iter_mut() {
        source.close();
    }
    match failure.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
