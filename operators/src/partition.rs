//! One source partition read in order: each message is parsed and stamped
//! with its place and the partition's watermark after it.
//!
//! The watermark is computed here, at the only point that sees the
//! partition's messages in their true order, and then travels with each
//! message; downstream operators never have to guess it from interleavings.

use crate::order::{self, OrderMsg, Rejected, Symbol};

/// A message with its place in its partition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sequenced {
    pub partition: u32,
    pub offset: u64,
    /// The partition's watermark once this message has been seen.
    pub watermark: i64,
    pub msg: Result<OrderMsg, Rejected>,
}

impl Sequenced {
    /// The symbol whose book the message goes to, if it has a valid one.
    pub fn symbol(&self) -> Option<&Symbol> {
        match &self.msg {
            Ok(m) => Some(&m.symbol),
            Err(r) => r.symbol.as_ref(),
        }
    }
}

/// What a partition's watermark is made of, as a checkpoint keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatermarkState {
    pub max_seen: Option<i64>,
    pub idle_floor: i64,
}

impl Default for WatermarkState {
    fn default() -> Self {
        WatermarkState {
            max_seen: None,
            idle_floor: i64::MIN,
        }
    }
}

/// The reading position and watermark of one partition.
#[derive(Clone, Debug)]
pub struct PartitionReader {
    partition: u32,
    out_of_orderness: i64,
    /// Largest event time among messages that passed validation.
    max_seen: Option<i64>,
    /// The watermark granted by processing time while the partition was idle;
    /// kept afterwards, since a watermark never goes back.
    idle_floor: i64,
}

impl PartitionReader {
    pub fn new(partition: u32, out_of_orderness: i64) -> PartitionReader {
        PartitionReader {
            partition,
            out_of_orderness,
            max_seen: None,
            idle_floor: i64::MIN,
        }
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    pub fn state(&self) -> WatermarkState {
        WatermarkState {
            max_seen: self.max_seen,
            idle_floor: self.idle_floor,
        }
    }

    /// Continues from a checkpoint's state: the watermark is where it was.
    pub fn restore(&mut self, state: WatermarkState) {
        self.max_seen = state.max_seen;
        self.idle_floor = state.idle_floor;
    }

    /// Parses the message at `offset` and places it.
    pub fn read(&mut self, line: &str, offset: u64, fallback_ts: i64) -> Sequenced {
        self.place(order::parse(line, fallback_ts), offset)
    }

    /// Places the message at `offset`, parsed here or ahead of the worker
    /// (a file's reader thread). Only a message that passes validation moves
    /// the watermark: a malformed line must not be able to close windows.
    pub fn place(&mut self, msg: Result<OrderMsg, Rejected>, offset: u64) -> Sequenced {
        if let Ok(m) = &msg {
            self.max_seen = Some(self.max_seen.map_or(m.ts, |seen| seen.max(m.ts)));
        }
        Sequenced {
            partition: self.partition,
            offset,
            watermark: self.watermark(),
            msg,
        }
    }

    /// `max event time seen − out_of_orderness`, or what idleness granted if
    /// more; `i64::MIN` before anything valid was seen.
    pub fn watermark(&self) -> i64 {
        let seen = self
            .max_seen
            .map_or(i64::MIN, |s| s.saturating_sub(self.out_of_orderness));
        seen.max(self.idle_floor)
    }

    /// The partition has had no message for `idle_ms`; past `timeout_ms` its
    /// watermark moves forward with processing time so the last windows close.
    /// A partition that never had a valid message has no event time to
    /// advance from and stays at `i64::MIN`.
    pub fn idle(&mut self, idle_ms: i64, timeout_ms: i64) {
        if let Some(seen) = self.max_seen {
            let granted = seen
                .saturating_sub(self.out_of_orderness)
                .saturating_add(idle_ms - timeout_ms);
            self.idle_floor = self.idle_floor.max(granted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_messages_move_the_watermark() {
        let mut p = PartitionReader::new(0, 2_000);
        assert_eq!(p.watermark(), i64::MIN);
        let first = p.read(
            r#"{"type":"cancel","order_id":"a","symbol":"X","ts":10000}"#,
            0,
            0,
        );
        assert_eq!(
            first.watermark, 8_000,
            "an unknown cancel still counts as seen"
        );
        let bad = p.read(
            r#"{"type":"cancel","order_id":"a","symbol":"X","ts":"late"}"#,
            1,
            0,
        );
        assert_eq!(bad.watermark, 8_000);
        let garbage = p.read("{oops", 2, 99_000);
        assert_eq!((garbage.watermark, garbage.offset), (8_000, 2));
        let older = p.read(
            r#"{"type":"cancel","order_id":"a","symbol":"X","ts":5000}"#,
            3,
            0,
        );
        assert_eq!(older.watermark, 8_000, "never goes back");
    }

    #[test]
    fn idleness_advances_past_the_timeout_only() {
        let mut p = PartitionReader::new(0, 2_000);
        p.read(
            r#"{"type":"cancel","order_id":"a","symbol":"X","ts":10000}"#,
            0,
            0,
        );
        p.idle(9_000, 10_000);
        assert_eq!(p.watermark(), 8_000);
        p.idle(13_000, 10_000);
        assert_eq!(p.watermark(), 11_000);
        p.read(
            r#"{"type":"cancel","order_id":"a","symbol":"X","ts":10001}"#,
            1,
            0,
        );
        assert_eq!(p.watermark(), 11_000, "never goes back");
        p.read(
            r#"{"type":"cancel","order_id":"a","symbol":"X","ts":14000}"#,
            2,
            0,
        );
        assert_eq!(p.watermark(), 12_000);
    }
}
