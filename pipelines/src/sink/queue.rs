//! A writer thread behind a bounded queue: the one mechanism the `dir:` and
//! ClickHouse sinks share. Workers hand items over and wait while the queue
//! is full, so a slow destination slows the source instead of growing
//! memory. The first failure of any of a sink's threads is kept before its
//! queue closes, so the worker that finds the queue closed reports the
//! cause; closing the sink joins every thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};

use super::Health;

/// A sink's writer threads and their first failure.
pub struct Writers {
    /// What the sink is, for messages ("ClickHouse", "dir").
    what: &'static str,
    /// Rows, queue depth and errors, for `/metrics` and `/readyz`.
    pub health: Arc<Health>,
    failure: Mutex<Option<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Writers {
    pub fn new(what: &'static str) -> Arc<Writers> {
        Arc::new(Writers {
            what,
            health: Arc::default(),
            failure: Mutex::default(),
            threads: Mutex::default(),
        })
    }

    /// Starts thread `name` running `write` over what is sent to the queue
    /// returned, which holds at most `capacity` items.
    pub fn start<T: Send + 'static>(
        self: &Arc<Self>,
        name: String,
        capacity: usize,
        write: impl FnOnce(&Items<T>) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<Queue<T>> {
        let (sender, receiver) = sync_channel(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let items = Items {
            receiver,
            depth: Arc::clone(&depth),
            health: Arc::clone(&self.health),
        };
        let writers = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                if let Err(e) = write(&items) {
                    writers.health.failed(&e);
                    if let Ok(mut failure) = writers.failure.lock() {
                        failure.get_or_insert(format!("{e:#}"));
                    }
                }
                // Only now does the queue close.
                drop(items);
            })
            .with_context(|| format!("starting a {} writer", self.what))?;
        self.threads
            .lock()
            .map_err(|_| anyhow!("{} sink poisoned", self.what))?
            .push(thread);
        Ok(Queue {
            sender,
            depth,
            writers: Arc::clone(self),
        })
    }

    /// The first failure of a writer, if any.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.failure.lock() {
            Ok(failure) => match failure.as_ref() {
                Some(text) => bail!("{text}"),
                None => Ok(()),
            },
            Err(_) => bail!("{} sink poisoned", self.what),
        }
    }

    /// Waits for every writer (once their queues are dropped), then
    /// reports the first failure.
    pub fn join(&self) -> anyhow::Result<()> {
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .map_err(|_| anyhow!("{} sink poisoned", self.what))?,
        );
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow!("a {} writer panicked", self.what))?;
        }
        self.check()
    }
}

/// A worker's way into one writer.
pub struct Queue<T> {
    sender: SyncSender<T>,
    depth: Arc<AtomicUsize>,
    writers: Arc<Writers>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            sender: self.sender.clone(),
            depth: Arc::clone(&self.depth),
            writers: Arc::clone(&self.writers),
        }
    }
}

impl<T> Queue<T> {
    /// Hands `item` over, waiting while the queue is full; fails with the
    /// writer's cause once it has stopped.
    pub fn send(&self, item: T) -> anyhow::Result<()> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.writers.health.queued.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(item).is_err() {
            self.writers.check()?;
            bail!("a {} writer stopped", self.writers.what);
        }
        Ok(())
    }

    /// Items waiting in the queue.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// The writer's end of its queue.
pub struct Items<T> {
    receiver: Receiver<T>,
    depth: Arc<AtomicUsize>,
    health: Arc<Health>,
}

impl<T> Items<T> {
    fn taken(&self) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
        self.health.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// The sink's health, for its writer to report on.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The next item, waiting for it; `None` once every sender is gone.
    pub fn recv(&self) -> Option<T> {
        let item = self.receiver.recv().ok()?;
        self.taken();
        Some(item)
    }

    /// The next item if one is waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let item = self.receiver.try_recv()?;
        self.taken();
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_that_fails_tells_its_cause_to_the_next_send_and_to_join() {
        let writers = Writers::new("test");
        let queue = writers
            .start("failing".into(), 1, |items: &Items<u32>| {
                let item = items.recv();
                bail!("could not write {item:?}")
            })
            .unwrap();
        queue.send(7).unwrap();
        // The writer fails on its first item and closes its queue.
        let error = loop {
            if let Err(e) = queue.send(8) {
                break e;
            }
        };
        assert_eq!(error.to_string(), "could not write Some(7)");
        drop(queue);
        assert_eq!(
            writers.join().unwrap_err().to_string(),
            "could not write Some(7)"
        );
    }

    #[test]
    fn a_writer_sees_every_item_in_order_and_the_depth_drains() {
        let writers = Writers::new("test");
        let (seen, got) = std::sync::mpsc::channel();
        let queue = writers
            .start("summing".into(), 4, move |items: &Items<u32>| {
                while let Some(item) = items.recv() {
                    seen.send(item)?;
                }
                Ok(())
            })
            .unwrap();
        for item in 0..100 {
            queue.send(item).unwrap();
        }
        drop(queue);
        writers.join().unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    }
}
