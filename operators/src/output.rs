//! The records Orderflow emits (CONTRACT §3) and the one description of
//! each output's columns, which every sink writes from.

use crate::decimal::{Fixed, Wide};
use crate::order::{Account, OrderId, Reason, Side, Symbol};

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
    pub maker_account: Option<Account>,
    pub taker_account: Option<Account>,
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

/// What one account holds of one symbol, after the symbol's trade `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub account: Account,
    pub symbol: Symbol,
    pub bought: Wide,
    pub sold: Wide,
    /// Σ price × qty at [`NOTIONAL_SCALE`](crate::decimal::NOTIONAL_SCALE) digits.
    pub buy_notional: i128,
    pub sell_notional: i128,
    /// Trades the account was a party to; a self-trade counts once.
    pub trades: u64,
    /// The price of the symbol's trade `seq`.
    pub last_price: Fixed,
    pub seq: u64,
}

impl Position {
    /// `bought − sold`, signed.
    pub fn position(&self) -> Wide {
        Wide(self.bought.0 - self.sold.0)
    }

    /// `position × last_price` at 8 digits, rounded half away from zero.
    pub fn exposure(&self) -> Wide {
        let product =
            crate::decimal::Notional::of(self.position().0, i128::from(self.last_price.0));
        product
            .vwap(i128::from(crate::decimal::ONE))
            .unwrap_or(Wide(if self.position().0 < 0 {
                i128::MIN
            } else {
                i128::MAX
            }))
    }
}

/// What one account's positions are worth, over all its symbols.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Exposure {
    pub account: Account,
    /// Σ |exposure| over the symbols with a non-zero position.
    pub gross: Wide,
    pub net: Wide,
    pub long: Wide,
    pub short: Wide,
    /// Symbols with a non-zero position.
    pub symbols: u64,
    /// Σ of the `seq` of every positions row of the account: grows with
    /// every change, so the highest is the truth.
    pub version: u64,
}

/// One of the top price levels of a symbol's side, after message `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depth {
    pub symbol: Symbol,
    pub side: Side,
    /// 1 is the best.
    pub level: u64,
    /// `None` once the side has fewer levels than this.
    pub price: Option<Fixed>,
    pub qty: Fixed,
    pub orders: u64,
    pub seq: u64,
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
    /// A sum of price × qty with its 16 fractional digits: a JSON string,
    /// `Decimal(38, 16)`.
    Notional,
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
            nullable("maker_account", Kind::Text),
            nullable("taker_account", Kind::Text),
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

pub const POSITIONS: Output = Output {
    name: "positions",
    columns: &[
        column("account", Kind::Text),
        column("symbol", Kind::Text),
        column("position", Kind::Amount),
        column("bought", Kind::Amount),
        column("sold", Kind::Amount),
        column("buy_notional", Kind::Notional),
        column("sell_notional", Kind::Notional),
        column("trades", Kind::Count),
        column("last_price", Kind::Price),
        column("exposure", Kind::Amount),
        column("seq", Kind::Count),
    ],
};

pub const EXPOSURE: Output = Output {
    name: "exposure",
    columns: &[
        column("account", Kind::Text),
        column("gross", Kind::Amount),
        column("net", Kind::Amount),
        column("long", Kind::Amount),
        column("short", Kind::Amount),
        column("symbols", Kind::Count),
        column("version", Kind::Count),
    ],
};

pub const DEPTH: Output = Output {
    name: "depth",
    columns: &[
        column("symbol", Kind::Text),
        column("side", Kind::Text),
        column("level", Kind::Count),
        nullable("price", Kind::Price),
        column("qty", Kind::Price),
        column("orders", Kind::Count),
        column("seq", Kind::Count),
    ],
};

/// Every output, indexed by [`Record::output`](crate::dataflow::Record::output).
pub const OUTPUTS: [&Output; 8] = [
    &EVENTS, &TRADES, &BBO, &CANDLES, &LATE, &POSITIONS, &EXPOSURE, &DEPTH,
];

/// The outputs the differential views make: left out, the views are not built.
pub const VIEWS: [&Output; 3] = [&POSITIONS, &EXPOSURE, &DEPTH];

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
    /// A [`Kind::Notional`] value, scaled by 10^16.
    fn notional(&mut self, value: i128);
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
        v.text(self.maker_account.as_deref());
        v.text(self.taker_account.as_deref());
    }
}

impl Position {
    pub fn values(&self, v: &mut impl Values) {
        v.text(Some(&self.account));
        v.text(Some(&self.symbol));
        v.amount(self.position());
        v.amount(self.bought);
        v.amount(self.sold);
        v.notional(self.buy_notional);
        v.notional(self.sell_notional);
        v.count(Some(self.trades));
        v.price(Some(self.last_price));
        v.amount(self.exposure());
        v.count(Some(self.seq));
    }
}

impl Exposure {
    pub fn values(&self, v: &mut impl Values) {
        v.text(Some(&self.account));
        v.amount(self.gross);
        v.amount(self.net);
        v.amount(self.long);
        v.amount(self.short);
        v.count(Some(self.symbols));
        v.count(Some(self.version));
    }
}

impl Depth {
    pub fn values(&self, v: &mut impl Values) {
        v.text(Some(&self.symbol));
        v.text(Some(self.side.as_str()));
        v.count(Some(self.level));
        v.price(self.price);
        v.price(Some(self.qty));
        v.count(Some(self.orders));
        v.count(Some(self.seq));
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
        fn notional(&mut self, _: i128) {
            self.next(Kind::Notional, true);
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
            maker_account: Some("mm".into()),
            taker_account: None,
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
            Record::Position(Position {
                account: "mm".into(),
                symbol: "A".into(),
                bought: Wide(0),
                sold: Wide(2),
                buy_notional: 0,
                sell_notional: 2,
                trades: 1,
                last_price: Fixed(1),
                seq: 1,
            }),
            Record::Exposure(Exposure {
                account: "mm".into(),
                ..Exposure::default()
            }),
            Record::Depth(Depth {
                symbol: "A".into(),
                side: Side::Sell,
                level: 1,
                price: None,
                qty: Fixed(0),
                orders: 0,
                seq: 2,
            }),
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
            r#"{"trade_id":"A-1","symbol":"A","seq":1,"price":"0.00000001","qty":"0.00000002","maker_order_id":"m","taker_order_id":"t","taker_side":"buy","ts":3,"maker_account":"mm","taker_account":null}"#
        );
        // `raw` is left out when absent; other absent values are null.
        assert!(!lines[0].contains("raw"), "{}", lines[0]);
        assert!(lines[3].contains(r#""bid":null"#), "{}", lines[3]);
        assert!(
            lines[5].ends_with(r#""taker_account":null,"interval":"1m"}"#),
            "{}",
            lines[5]
        );
        assert_eq!(
            lines[6],
            r#"{"account":"mm","symbol":"A","position":"-0.00000002","bought":"0","sold":"0.00000002","buy_notional":"0","sell_notional":"0.0000000000000002","trades":1,"last_price":"0.00000001","exposure":"0","seq":1}"#
        );
        assert_eq!(
            lines[8],
            r#"{"symbol":"A","side":"sell","level":1,"price":null,"qty":"0","orders":0,"seq":2}"#
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
