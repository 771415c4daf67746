//! The records Orderflow emits (CONTRACT §3), serialized as the contract's JSON.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::decimal::{Fixed, Wide};
use crate::order::{OrderId, Reason, Side, Symbol};

/// The outcome of one input message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Filled,
    Expired,
    Cancelled,
    Replaced,
    Rejected,
}

/// Exactly one per input message: `count(events) == count(input messages)`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub symbol: Option<Symbol>,
    pub order_id: Option<OrderId>,
    /// 1-based position among the symbol's input messages.
    pub seq: Option<u64>,
    pub status: Status,
    #[serde(serialize_with = "display")]
    pub reason: Option<Reason>,
    pub ts: i64,
    /// The input text of a message with no valid symbol, kept for inspection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The message's place in its source, (partition, offset), set by the
    /// dataflow: what tells apart the events of messages without a symbol
    /// in a sink that collapses re-sent rows. Not in the contract's JSON.
    #[serde(skip)]
    pub origin: (u32, u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trade {
    pub symbol: Symbol,
    /// Per symbol, from 1, without gaps.
    pub seq: u64,
    pub price: Fixed,
    pub qty: Fixed,
    pub maker_order_id: OrderId,
    pub taker_order_id: OrderId,
    pub taker_side: Side,
    /// The taker message's event time.
    pub ts: i64,
}

impl Serialize for Trade {
    /// Writes `trade_id` as `"<symbol>-<seq>"` without storing it.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_struct("Trade", 9)?;
        t.serialize_field("trade_id", &format_args!("{}-{}", self.symbol, self.seq))?;
        t.serialize_field("symbol", &self.symbol)?;
        t.serialize_field("seq", &self.seq)?;
        t.serialize_field("price", &self.price)?;
        t.serialize_field("qty", &self.qty)?;
        t.serialize_field("maker_order_id", &self.maker_order_id)?;
        t.serialize_field("taker_order_id", &self.taker_order_id)?;
        t.serialize_field("taker_side", &self.taker_side)?;
        t.serialize_field("ts", &self.ts)?;
        t.end()
    }
}

/// Best bid and offer after a message that changed either.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bbo {
    pub symbol: Symbol,
    /// The `seq` of the message that changed it.
    pub seq: u64,
    pub bid: Option<Fixed>,
    pub bid_qty: Option<Fixed>,
    pub ask: Option<Fixed>,
    pub ask_qty: Option<Fixed>,
    pub ts: i64,
}

/// One window of trades of one symbol at one interval.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Candle {
    pub symbol: Symbol,
    /// The interval as configured, e.g. `"1m"`.
    pub interval: crate::window::Interval,
    pub window_start: i64,
    pub window_end: i64,
    pub open: Fixed,
    pub high: Fixed,
    pub low: Fixed,
    pub close: Fixed,
    pub volume: Wide,
    pub vwap: Wide,
    pub trades: u64,
    /// 1 on first emission, +1 for each re-emission by a trade within the
    /// allowed lateness; the highest version is the truth.
    pub version: u32,
}

/// A trade that came after its window's allowed lateness had passed: the
/// trade's own fields plus `interval`, flat.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Late {
    #[serde(flatten)]
    pub trade: Trade,
    pub interval: crate::window::Interval,
}

fn display<T: std::fmt::Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}
