//! Run-wide counters, the progress bar drawn from them, and the closing summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use operators::dataflow::Record;
use operators::order::Reason;
use operators::output::{Status, OUTPUTS};

/// Counted by every worker's sink as records leave, so the numbers are what
/// was actually written.
#[derive(Default, Debug)]
pub struct Counters {
    pub input_bytes: AtomicU64,
    pub events: AtomicU64,
    pub rejected: AtomicU64,
    /// Rejected messages by [`Reason::kind`].
    pub rejects: [AtomicU64; Reason::KINDS.len()],
    pub trades: AtomicU64,
    pub bbo: AtomicU64,
    pub candles: AtomicU64,
    pub late: AtomicU64,
    /// Rows of the views: positions, exposure, depth.
    pub views: [AtomicU64; 3],
}

impl Counters {
    /// Counts a step's records: tallied here and added once per counter,
    /// since every worker adds to the same counters and an atomic add per
    /// record would keep their cache line moving between the cores.
    pub fn count(&self, records: &[Record]) {
        let mut outputs = [0; OUTPUTS.len()];
        let mut rejects = [0; Reason::KINDS.len()];
        let mut rejected = 0;
        for record in records {
            outputs[record.output()] += 1;
            if let Record::Event(e) = record {
                if e.status == Status::Rejected {
                    rejected += 1;
                    if let Some(reason) = e.reason {
                        rejects[reason.kind()] += 1;
                    }
                }
            }
        }
        let by_output = [
            &self.events,
            &self.trades,
            &self.bbo,
            &self.candles,
            &self.late,
            &self.views[0],
            &self.views[1],
            &self.views[2],
        ];
        let counted = by_output.into_iter().zip(outputs);
        let counted = counted.chain(self.rejects.iter().zip(rejects));
        for (counter, n) in counted.chain([(&self.rejected, rejected)]) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The progress bar's message: what the bar itself does not show.
    fn live(&self) -> String {
        format!(
            "trades {} · rejected {} · candles {} · late {}",
            Self::get(&self.trades),
            Self::get(&self.rejected),
            Self::get(&self.candles),
            Self::get(&self.late),
        )
    }

    /// One line: orders, trades, rejects, candles, late and the rate.
    pub fn summary(&self, elapsed: Duration) -> String {
        let orders = Self::get(&self.events);
        let rate = orders as f64 / elapsed.as_secs_f64().max(1e-9);
        format!(
            "orders {orders} · trades {} · rejected {} · bbo {} · candles {} · late {} · {:.1}s · {} orders/s",
            Self::get(&self.trades),
            Self::get(&self.rejected),
            Self::get(&self.bbo),
            Self::get(&self.candles),
            Self::get(&self.late),
            elapsed.as_secs_f64(),
            human(rate),
        )
    }
}

fn human(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e3 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

/// A progress bar on stderr, redrawn from the counters until dropped. Hidden
/// when stderr is not a terminal.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// `messages` or `bytes`: the size of a bounded input, when known.
    pub fn start(
        counters: Arc<Counters>,
        messages: Option<u64>,
        bytes: Option<u64>,
        quiet: bool,
    ) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let thread = (!quiet).then(|| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let (bar, of_bytes) = match (messages, bytes) {
                    (Some(n), _) => (ProgressBar::new(n), false),
                    (None, Some(n)) => (ProgressBar::new(n), true),
                    (None, None) => (ProgressBar::new_spinner(), false),
                };
                let template = match (messages, bytes) {
                    (Some(_), _) => "{bar:24} {human_pos}/{human_len} orders · eta {eta} · {msg}",
                    (None, Some(_)) => "{bar:24} {bytes}/{total_bytes} · eta {eta} · {msg}",
                    (None, None) => "{spinner} {msg}",
                };
                bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
                while !stop.load(Ordering::Relaxed) {
                    let orders = Counters::get(&counters.events);
                    bar.set_position(if of_bytes {
                        Counters::get(&counters.input_bytes)
                    } else {
                        orders
                    });
                    bar.set_message(match (messages, bytes) {
                        (None, None) => counters.summary(started.elapsed()),
                        _ => counters.live(),
                    });
                    std::thread::sleep(Duration::from_millis(200));
                }
                bar.finish_and_clear();
            })
        });
        Progress { done, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
