//! The records Orderflow emits (CONTRACT §3) and the one description of
//! each output's columns, which every sink writes from.

use crate::decimal::{Fixed, Wide};
use crate::order::{OrderId, Reason, Side, Symbol};

/// The outcome of one input message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Accepted,
    Filled,
    Expired,
    Cancelled,
    Replaced,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Filled => "filled",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
            Status::Replaced => "replaced",
            Status::Rejected => "rejected",
        }
    }
}

/// Exactly one per input message: `count(events) == count(input messages)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub symbol: Option<Symbol>,
    pub order_id: Option<OrderId>,
    /// 1-based position among the symbol's input messages.
    pub seq: Option<u64>,
    pub status: Status,
    pub reason: Option<Reason>,
    pub ts: i64,
    /// The input text of a message with no valid symbol, kept for inspection.
    pub raw: Option<String>,
    /// The message's place in its source, (partition, offset), set by the
    /// dataflow: what tells apart the events of messages without a symbol
    /// in a sink that collapses re-sent rows. Not in the contract's JSON.
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

/// Best bid and offer after a message that changed either.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Late {
    pub trade: Trade,
    pub interval: crate::window::Interval,
}

/// How a column's values are typed, in every sink: the contract's JSON, the
/// Parquet copies and `orderflow sql`'s tables, and ClickHouse's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text; a JSON string.
    Text,
    /// A sequence number or count, `u64`.
    Count,
    /// A candle's version, `u32`.
    Version,
    /// An exact decimal in a [`Fixed`]: a JSON string, `Decimal(18, 8)`.
    Price,
    /// An exact decimal in a [`Wide`]: a JSON string, `Decimal(38, 8)`.
    Amount,
    /// Event time in milliseconds since the epoch.
    Time,
}

/// Whether a column may lack a value, and how JSON writes the lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Required,
    /// `null` when absent.
    Nullable,
    /// Left out of the JSON object when absent (and null in tables).
    Omitted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub presence: Presence,
}

/// One output: its name and its columns in order. The only description of
/// an output's shape; JSON, Arrow and the tests of the DDL and JSON Schemas
/// all read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Output {
    pub name: &'static str,
    pub columns: &'static [Column],
}

const fn column(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        presence: Presence::Required,
    }
}

const fn nullable(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        presence: Presence::Nullable,
    }
}

/// The columns a trade and a late trade share.
macro_rules! trade_columns {
    ($($more:expr),*) => {
        &[
            column("trade_id", Kind::Text),
            column("symbol", Kind::Text),
            column("seq", Kind::Count),
            column("price", Kind::Price),
            column("qty", Kind::Price),
            column("maker_order_id", Kind::Text),
            column("taker_order_id", Kind::Text),
            column("taker_side", Kind::Text),
            column("ts", Kind::Time),
            $($more),*
        ]
    };
}

pub const EVENTS: Output = Output {
    name: "events",
    columns: &[
        nullable("symbol", Kind::Text),
        nullable("order_id", Kind::Text),
        nullable("seq", Kind::Count),
        column("status", Kind::Text),
        nullable("reason", Kind::Text),
        column("ts", Kind::Time),
        Column {
            name: "raw",
            kind: Kind::Text,
            presence: Presence::Omitted,
        },
    ],
};

pub const TRADES: Output = Output {
    name: "trades",
    columns: trade_columns!(),
};

pub const BBO: Output = Output {
    name: "bbo",
    columns: &[
        column("symbol", Kind::Text),
        column("seq", Kind::Count),
        nullable("bid", Kind::Price),
        nullable("bid_qty", Kind::Price),
        nullable("ask", Kind::Price),
        nullable("ask_qty", Kind::Price),
        column("ts", Kind::Time),
    ],
};

pub const CANDLES: Output = Output {
    name: "candles",
    columns: &[
        column("symbol", Kind::Text),
        column("interval", Kind::Text),
        column("window_start", Kind::Time),
        column("window_end", Kind::Time),
        column("open", Kind::Price),
        column("high", Kind::Price),
        column("low", Kind::Price),
        column("close", Kind::Price),
        column("volume", Kind::Amount),
        column("vwap", Kind::Amount),
        column("trades", Kind::Count),
        column("version", Kind::Version),
    ],
};

pub const LATE: Output = Output {
    name: "late",
    columns: trade_columns!(column("interval", Kind::Text)),
};

/// Every output, indexed by [`Record::output`](crate::dataflow::Record::output).
pub const OUTPUTS: [&Output; 5] = [&EVENTS, &TRADES, &BBO, &CANDLES, &LATE];

/// The output named `name`.
pub fn output(name: &str) -> Option<&'static Output> {
    OUTPUTS.into_iter().find(|o| o.name == name)
}

/// Receives a record's values in its output's column order, one call per
/// column of the matching kind: how a sink fills its rows without knowing
/// the record types.
pub trait Values {
    /// A [`Kind::Text`] value.
    fn text(&mut self, value: Option<&str>);
    /// A [`Kind::Text`] value that is written rather than stored (a reason,
    /// an interval, a trade id).
    fn display(&mut self, value: Option<&dyn std::fmt::Display>);
    fn count(&mut self, value: Option<u64>);
    fn version(&mut self, value: u32);
    fn price(&mut self, value: Option<Fixed>);
    fn amount(&mut self, value: Wide);
    fn time(&mut self, value: i64);
}

impl Event {
    pub fn values(&self, v: &mut impl Values) {
        v.text(self.symbol.as_deref());
        v.text(self.order_id.as_deref());
        v.count(self.seq);
        v.text(Some(self.status.as_str()));
        v.display(self.reason.as_ref().map(|r| r as &dyn std::fmt::Display));
        v.time(self.ts);
        v.text(self.raw.as_deref());
    }
}

impl Trade {
    pub fn values(&self, v: &mut impl Values) {
        v.display(Some(&format_args!("{}-{}", self.symbol, self.seq)));
        v.text(Some(&self.symbol));
        v.count(Some(self.seq));
        v.price(Some(self.price));
        v.price(Some(self.qty));
        v.text(Some(&self.maker_order_id));
        v.text(Some(&self.taker_order_id));
        v.text(Some(self.taker_side.as_str()));
        v.time(self.ts);
    }
}

impl Bbo {
    pub fn values(&self, v: &mut impl Values) {
        v.text(Some(&self.symbol));
        v.count(Some(self.seq));
        v.price(self.bid);
        v.price(self.bid_qty);
        v.price(self.ask);
        v.price(self.ask_qty);
        v.time(self.ts);
    }
}

impl Candle {
    pub fn values(&self, v: &mut impl Values) {
        v.text(Some(&self.symbol));
        v.display(Some(&self.interval));
        v.time(self.window_start);
        v.time(self.window_end);
        v.price(Some(self.open));
        v.price(Some(self.high));
        v.price(Some(self.low));
        v.price(Some(self.close));
        v.amount(self.volume);
        v.amount(self.vwap);
        v.count(Some(self.trades));
        v.version(self.version);
    }
}

impl Late {
    pub fn values(&self, v: &mut impl Values) {
        self.trade.values(v);
        v.display(Some(&self.interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::Record;
    use crate::order::Field;

    /// Checks each value against the next column of the record's output.
    struct Follows {
        columns: std::slice::Iter<'static, Column>,
    }

    impl Follows {
        fn next(&mut self, kind: Kind, present: bool) {
            let column = self.columns.next().expect("more values than columns");
            assert_eq!(column.kind, kind, "{}", column.name);
            assert!(
                present || column.presence != Presence::Required,
                "{} is required",
                column.name
            );
        }
    }

    impl Values for Follows {
        fn text(&mut self, value: Option<&str>) {
            self.next(Kind::Text, value.is_some());
        }
        fn display(&mut self, value: Option<&dyn std::fmt::Display>) {
            self.next(Kind::Text, value.is_some());
        }
        fn count(&mut self, value: Option<u64>) {
            self.next(Kind::Count, value.is_some());
        }
        fn version(&mut self, _: u32) {
            self.next(Kind::Version, true);
        }
        fn price(&mut self, value: Option<Fixed>) {
            self.next(Kind::Price, value.is_some());
        }
        fn amount(&mut self, _: Wide) {
            self.next(Kind::Amount, true);
        }
        fn time(&mut self, _: i64) {
            self.next(Kind::Time, true);
        }
    }

    fn records() -> Vec<Record> {
        let trade = Trade {
            symbol: "A".into(),
            seq: 1,
            price: Fixed(1),
            qty: Fixed(2),
            maker_order_id: "m".into(),
            taker_order_id: "t".into(),
            taker_side: Side::Buy,
            ts: 3,
        };
        let event = |symbol: Option<&str>| Event {
            symbol: symbol.map(Into::into),
            order_id: None,
            seq: None,
            status: Status::Rejected,
            reason: Some(Reason::Missing(Field::Price)),
            ts: 0,
            raw: symbol.is_none().then(|| "{".into()),
            origin: (0, 0),
        };
        let interval = crate::window::Interval(60_000);
        vec![
            Record::Event(event(Some("A"))),
            Record::Event(event(None)),
            Record::Trade(trade.clone()),
            Record::Bbo(Bbo {
                symbol: "A".into(),
                seq: 1,
                bid: None,
                bid_qty: None,
                ask: Some(Fixed(1)),
                ask_qty: Some(Fixed(1)),
                ts: 0,
            }),
            Record::Candle(Candle {
                symbol: "A".into(),
                interval,
                window_start: 0,
                window_end: 60_000,
                open: Fixed(1),
                high: Fixed(1),
                low: Fixed(1),
                close: Fixed(1),
                volume: Wide(2),
                vwap: Wide(1),
                trades: 1,
                version: 1,
            }),
            Record::Late(Late { trade, interval }),
        ]
    }

    #[test]
    fn every_record_follows_its_description() {
        for record in records() {
            let output = OUTPUTS[record.output()];
            let mut follows = Follows {
                columns: output.columns.iter(),
            };
            record.values(&mut follows);
            assert!(
                follows.columns.next().is_none(),
                "{} lacks values",
                output.name
            );
        }
    }

    #[test]
    fn json_writes_the_contract_fields_in_column_order() {
        let mut out = Vec::new();
        for record in records() {
            crate::json::write(&record, &mut out);
            out.push(b'\n');
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            r#"{"symbol":null,"order_id":null,"seq":null,"status":"rejected","reason":"missing price","ts":0,"raw":"{"}"#
        );
        assert_eq!(
            lines[2],
            r#"{"trade_id":"A-1","symbol":"A","seq":1,"price":"0.00000001","qty":"0.00000002","maker_order_id":"m","taker_order_id":"t","taker_side":"buy","ts":3}"#
        );
        // `raw` is left out when absent; other absent values are null.
        assert!(!lines[0].contains("raw"), "{}", lines[0]);
        assert!(lines[3].contains(r#""bid":null"#), "{}", lines[3]);
        assert!(
            lines[5].ends_with(r#""ts":3,"interval":"1m"}"#),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn json_escapes_text_as_json_requires() {
        let mut out = Vec::new();
        let raw = "a\"b\\c\n\u{1}é";
        let mut event = match &records()[1] {
            Record::Event(e) => e.clone(),
            _ => unreachable!(),
        };
        event.raw = Some(raw.into());
        crate::json::write(&Record::Event(event), &mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["raw"], raw);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(r#""a\"b\\c\n\u0001é""#));
    }
}
