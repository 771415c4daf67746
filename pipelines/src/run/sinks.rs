//! The sink operator: each worker writes its records through its own handle
//! of every sink, and tells the handles when a checkpoint's records are all
//! written.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use operators::dataflow::{Record, Time};
use operators::output::OUTPUTS;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use crate::latency::Recorder;
use crate::progress::Counters;
use crate::sink::SinkHandle;

/// Checkpoints a worker's operators have snapshotted, as (time, id), that
/// its sinks have still to pass.
pub type Barriers = Rc<RefCell<VecDeque<(Time, u64)>>>;

/// Where a worker's loop finds the first error of its dataflow: operators
/// cannot return one.
pub type Failure = Rc<RefCell<Option<anyhow::Error>>>;

/// One worker's sink handles and what they need.
pub struct SinkWriter {
    pub handles: Vec<Box<dyn SinkHandle>>,
    pub barriers: Barriers,
    pub failure: Failure,
    pub counters: Arc<Counters>,
    /// Which outputs the sinks write, by index.
    pub outputs: [bool; OUTPUTS.len()],
    pub latency: Recorder,
}

impl SinkWriter {
    /// Writes `records` to the sinks, flushing after every step. A
    /// checkpoint's barrier (set by the books, before any record of a later
    /// time exists) goes between its time's records and later ones: a record
    /// of a later time waits while a barrier before it is still pending, as
    /// the books' records and the views' rows come by different paths and a
    /// later time can arrive first.
    pub fn attach(mut self, records: StreamVec<'_, Time, Record>) {
        let mut reached = Vec::new();
        // Records of times after a pending barrier, in arrival order.
        let mut held: Vec<(Time, Vec<Record>)> = Vec::new();
        records.sink(Pipeline, "Sinks", move |(input, frontier)| {
            self.release(&mut held, frontier, &mut reached);
            input.for_each(|cap, records| {
                let Some(&time) = cap.least() else { return };
                match self.before_barrier(time) {
                    true => self.write(time, records, &mut reached),
                    false => held.push((time, std::mem::take(records))),
                }
            });
            self.release(&mut held, frontier, &mut reached);
            // Hand over what is due, so that sinks see rows with the
            // latency of a step (or of their flush period) rather than of
            // a full buffer.
            let done = frontier.is_empty();
            for handle in self.handles.iter_mut() {
                let handed = handle.flush().and_then(|()| match done {
                    true => handle.finish(),
                    false => Ok(()),
                });
                if let Err(e) = handed {
                    self.failure.borrow_mut().get_or_insert(e);
                }
            }
            for (time, records) in reached.drain(..) {
                self.latency.reached(time, records);
            }
            if done {
                self.handles.clear();
            }
        });
    }

    /// Whether a record of `time` comes before every pending barrier.
    fn before_barrier(&self, time: Time) -> bool {
        let pending = self.barriers.borrow().front().map(|&(t, _)| t);
        pending.is_none_or(|barrier| time <= barrier)
    }

    /// Hands `records` of `time` to every sink handle, which encode them
    /// where they lie (a record is too big to move for nothing), and empties
    /// it; counts them for the latency (a view's rows wait for its interval
    /// by design: the latency is the messages' own outputs').
    fn write(&mut self, time: Time, records: &mut Vec<Record>, reached: &mut Vec<(Time, usize)>) {
        self.counters.count(records);
        let mut direct = 0;
        for record in records.iter() {
            direct += usize::from(!record.is_view());
            if !self.outputs[record.output()] {
                continue;
            }
            for handle in self.handles.iter_mut() {
                if let Err(e) = handle.write(record) {
                    self.failure.borrow_mut().get_or_insert(e);
                }
            }
        }
        records.clear();
        reached.push((time, direct));
    }

    /// Writes the held records before the first pending barrier, passes it
    /// once the frontier has (every record of its time is written), and so
    /// on barrier by barrier: a barrier never passes a held record of its
    /// own time or before.
    fn release(
        &mut self,
        held: &mut Vec<(Time, Vec<Record>)>,
        frontier: &MutableAntichain<Time>,
        reached: &mut Vec<(Time, usize)>,
    ) {
        loop {
            let pending = self.barriers.borrow().front().copied();
            let due = |time: Time| pending.is_none_or(|(barrier, _)| time <= barrier);
            let ready: Vec<_> = held.extract_if(.., |(time, _)| due(*time)).collect();
            for (time, mut records) in ready {
                self.write(time, &mut records, reached);
            }
            let Some((time, id)) = pending else { return };
            if frontier.less_equal(&time) {
                return;
            }
            for handle in self.handles.iter_mut() {
                if let Err(e) = handle.barrier(id) {
                    self.failure.borrow_mut().get_or_insert(e);
                }
            }
            self.barriers.borrow_mut().pop_front();
        }
    }
}
