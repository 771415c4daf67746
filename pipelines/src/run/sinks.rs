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
    /// Writes `records` to the sinks, flushing after every step.
    pub fn attach(mut self, records: StreamVec<'_, Time, Record>) {
        let mut reached = Vec::new();
        records.sink(Pipeline, "Sinks", move |(input, frontier)| {
            input.for_each(|cap, records| {
                // Records come in time order: one of a later time means
                // every earlier checkpoint's records have been written.
                if let Some(&time) = cap.least() {
                    self.pass_barriers(|t| t < time);
                    // A view's rows wait for its interval by design: the
                    // latency is the messages' own outputs'.
                    let direct = records.iter().filter(|r| !r.is_view()).count();
                    reached.push((time, direct));
                }
                for record in records.drain(..) {
                    self.counters.count(&record);
                    if !self.outputs[record.output()] {
                        continue;
                    }
                    for handle in self.handles.iter_mut() {
                        if let Err(e) = handle.write(&record) {
                            self.failure.borrow_mut().get_or_insert(e);
                        }
                    }
                }
            });
            // Hand over what is due, so that sinks see rows with the
            // latency of a step (or of their flush period) rather than of
            // a full buffer.
            for handle in self.handles.iter_mut() {
                if let Err(e) = handle.flush() {
                    self.failure.borrow_mut().get_or_insert(e);
                }
            }
            for (time, records) in reached.drain(..) {
                self.latency.reached(time, records);
            }
            self.pass_barriers(|t| !frontier.less_equal(&t));
            if frontier.is_empty() {
                self.handles.clear();
            }
        });
    }

    /// Tells the sinks of every checkpoint due whose time is `complete`
    /// that their rows up to it are all written.
    fn pass_barriers(&mut self, complete: impl Fn(Time) -> bool) {
        let mut due = self.barriers.borrow_mut();
        while let Some(&(time, id)) = due.front() {
            if !complete(time) {
                break;
            }
            for handle in self.handles.iter_mut() {
                if let Err(e) = handle.barrier(id) {
                    self.failure.borrow_mut().get_or_insert(e);
                }
            }
            due.pop_front();
        }
    }
}
