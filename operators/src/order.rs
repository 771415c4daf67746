//! Order messages (CONTRACT §1) and their validation.
//!
//! Parsing never fails as a whole: every input line becomes either an
//! [`OrderMsg`] or a [`Rejected`] that keeps whatever symbol and order id
//! could still be read, so that each message gets exactly one event.

use compact_str::CompactString;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal::{DecimalError, Fixed};

/// An instrument name, 1–16 chars of `A-Z a-z 0-9 . _ -`: always inline.
pub type Symbol = CompactString;
/// A client order id, 1–64 chars: inline up to 24 bytes, so most ids never allocate.
pub type OrderId = CompactString;
/// The owner of an order, up to 64 chars: whose position its fills change.
pub type Account = CompactString;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

impl TimeInForce {
    /// As a message writes it (`tif`).
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
        }
    }
}

/// What a message asks of the book, already validated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// `price` is `None` for a market order.
    New {
        side: Side,
        price: Option<Fixed>,
        qty: Fixed,
        tif: TimeInForce,
    },
    Cancel,
    Replace {
        price: Option<Fixed>,
        qty: Option<Fixed>,
    },
}

/// A validated order message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderMsg {
    pub symbol: Symbol,
    pub order_id: OrderId,
    pub command: Command,
    /// The owner a `new` gives its order; a cancel's or replace's is ignored
    /// (the resting order keeps its own).
    pub account: Option<Account>,
    /// Event time in ms: the message's `ts`, else the fallback the source gave.
    pub ts: i64,
}

/// A field of an order message, named in rejection reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Field {
    Type,
    OrderId,
    Symbol,
    Side,
    OrderType,
    Price,
    Qty,
    PriceOrQty,
    Tif,
    Account,
    Ts,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Type => "type",
            Field::OrderId => "order_id",
            Field::Symbol => "symbol",
            Field::Side => "side",
            Field::OrderType => "order_type",
            Field::Price => "price",
            Field::Qty => "qty",
            Field::PriceOrQty => "price or qty",
            Field::Tif => "tif",
            Field::Account => "account",
            Field::Ts => "ts",
        })
    }
}

/// Why a message was refused or expired; its text is the event's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    Malformed,
    Missing(Field),
    Invalid(Field),
    TooPrecise(Field),
    Duplicate,
    Unknown,
    /// Expired: an IOC or market order's unfilled remainder.
    Remainder,
    /// Expired: a fill-or-kill order the book could not fill completely.
    Unfillable,
    /// Expired: a market order met an empty opposite side.
    NoLiquidity,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Malformed => f.write_str("malformed"),
            Reason::Missing(field) => write!(f, "missing {field}"),
            Reason::Invalid(field) => write!(f, "invalid {field}"),
            Reason::TooPrecise(field) => write!(f, "{field} has more than 8 decimals"),
            Reason::Duplicate => f.write_str("duplicate"),
            Reason::Unknown => f.write_str("unknown"),
            Reason::Remainder => f.write_str("remainder"),
            Reason::Unfillable => f.write_str("unfillable"),
            Reason::NoLiquidity => f.write_str("no liquidity"),
        }
    }
}

impl Reason {
    /// Each reason's kind (the field left out), as a metrics label.
    pub const KINDS: [&'static str; 9] = [
        "malformed",
        "missing",
        "invalid",
        "too_precise",
        "duplicate",
        "unknown",
        "remainder",
        "unfillable",
        "no_liquidity",
    ];

    /// How many of [`Reason::KINDS`], from the first, reject a message (the
    /// rest expire an order's remainder).
    pub const REJECTIONS: usize = 6;

    /// The index of the reason's kind in [`Reason::KINDS`].
    pub fn kind(self) -> usize {
        match self {
            Reason::Malformed => 0,
            Reason::Missing(_) => 1,
            Reason::Invalid(_) => 2,
            Reason::TooPrecise(_) => 3,
            Reason::Duplicate => 4,
            Reason::Unknown => 5,
            Reason::Remainder => 6,
            Reason::Unfillable => 7,
            Reason::NoLiquidity => 8,
        }
    }
}

/// A message that failed validation, with what could still be read of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// Set only when the symbol is valid; a rejected message without one has
    /// no book to go to and no `seq`.
    pub symbol: Option<Symbol>,
    pub order_id: Option<OrderId>,
    pub reason: Reason,
    pub ts: i64,
    /// The input text, kept when there is no symbol to file it under.
    pub raw: Option<String>,
}

impl Rejected {
    /// A message that could not be read as an order at all: only its text
    /// and the time it came in (`ts` when it has none of its own) are known.
    pub fn malformed(raw: String, ts: i64) -> Rejected {
        Rejected {
            symbol: None,
            order_id: None,
            reason: Reason::Malformed,
            ts,
            raw: Some(raw),
        }
    }
}

/// Every field as raw JSON, so that one ill-typed field is reported by name
/// instead of failing the whole object.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow, default)]
    side: Option<&'a RawValue>,
    #[serde(borrow, default)]
    order_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    qty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tif: Option<&'a RawValue>,
    #[serde(borrow, default)]
    account: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
}

/// Reads one message. `fallback_ts` is the event time when `ts` is absent
/// (the Kafka record timestamp, else the time of ingestion).
pub fn parse(line: &str, fallback_ts: i64) -> Result<OrderMsg, Rejected> {
    let malformed = || Rejected::malformed(line.to_owned(), fallback_ts);
    // serde would also read a struct from a JSON array; only objects are messages.
    if !line.trim_start().starts_with('{') {
        return Err(malformed());
    }
    let Ok(fields) = serde_json::from_str::<Fields>(line) else {
        return Err(malformed());
    };
    // Identity first, so that later rejections can name their order.
    let symbol = text(fields.symbol).filter(|s| valid_symbol(s));
    let order_id = text(fields.order_id).filter(|s| !s.is_empty() && within_64_chars(s));
    let ts = match fields.ts.map(|raw| raw.get().parse::<i64>()) {
        None => Ok(fallback_ts),
        Some(Ok(ts)) if ts >= 0 => Ok(ts),
        Some(_) => Err(Reason::Invalid(Field::Ts)),
    };
    let reject = |reason| Rejected {
        symbol: symbol.clone(),
        order_id: order_id.clone(),
        reason,
        ts: *ts.as_ref().unwrap_or(&fallback_ts),
        raw: symbol.is_none().then(|| line.to_owned()),
    };
    let checked = (|| {
        let kind = required(fields.kind, Field::Type)?;
        let Some(symbol) = symbol.clone() else {
            return Err(missing_or_invalid(fields.symbol, Field::Symbol));
        };
        let Some(order_id) = order_id.clone() else {
            return Err(missing_or_invalid(fields.order_id, Field::OrderId));
        };
        let ts = ts?;
        let account = match fields.account {
            None => None,
            Some(raw) => match text(Some(raw)) {
                Some(a) if within_64_chars(&a) => Some(a),
                _ => return Err(Reason::Invalid(Field::Account)),
            },
        };
        let command = match kind.as_str() {
            "new" => new_order(&fields)?,
            "cancel" => Command::Cancel,
            "replace" => {
                let price = decimal(fields.price, Field::Price)?;
                let qty = decimal(fields.qty, Field::Qty)?;
                if price.is_none() && qty.is_none() {
                    return Err(Reason::Missing(Field::PriceOrQty));
                }
                Command::Replace { price, qty }
            }
            _ => return Err(Reason::Invalid(Field::Type)),
        };
        Ok(OrderMsg {
            symbol,
            order_id,
            command,
            account,
            ts,
        })
    })();
    checked.map_err(reject)
}

fn new_order(fields: &Fields) -> Result<Command, Reason> {
    let side = match required(fields.side, Field::Side)?.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        _ => return Err(Reason::Invalid(Field::Side)),
    };
    let market = match fields.order_type.map(|t| text(Some(t))) {
        None => false,
        Some(Some(t)) if t == "limit" => false,
        Some(Some(t)) if t == "market" => true,
        Some(_) => return Err(Reason::Invalid(Field::OrderType)),
    };
    let tif = match fields.tif.map(|t| text(Some(t))) {
        None => TimeInForce::Gtc,
        Some(Some(t)) if t == "gtc" => TimeInForce::Gtc,
        Some(Some(t)) if t == "ioc" => TimeInForce::Ioc,
        Some(Some(t)) if t == "fok" => TimeInForce::Fok,
        Some(_) => return Err(Reason::Invalid(Field::Tif)),
    };
    let qty = decimal(fields.qty, Field::Qty)?.ok_or(Reason::Missing(Field::Qty))?;
    // A market order's price is ignored: it crosses any level.
    let price = match market {
        true => None,
        false => Some(decimal(fields.price, Field::Price)?.ok_or(Reason::Missing(Field::Price))?),
    };
    Ok(Command::New {
        side,
        price,
        qty,
        tif,
    })
}

/// A positive decimal given as a JSON number or string; `None` when absent.
fn decimal(raw: Option<&RawValue>, field: Field) -> Result<Option<Fixed>, Reason> {
    let Some(raw) = raw else { return Ok(None) };
    let json = raw.get();
    let digits = match json.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"').ok_or(Reason::Invalid(field))?,
        None => json,
    };
    match digits.parse::<Fixed>() {
        Ok(v) if v.is_positive() => Ok(Some(v)),
        Err(DecimalError::TooPrecise) => Err(Reason::TooPrecise(field)),
        _ => Err(Reason::Invalid(field)),
    }
}

fn required(raw: Option<&RawValue>, field: Field) -> Result<CompactString, Reason> {
    let raw = raw.ok_or(Reason::Missing(field))?;
    text(Some(raw)).ok_or(Reason::Invalid(field))
}

fn missing_or_invalid(raw: Option<&RawValue>, field: Field) -> Reason {
    match raw {
        None => Reason::Missing(field),
        Some(_) => Reason::Invalid(field),
    }
}

/// The JSON string's text, unescaped; `None` for any other JSON type.
fn text(raw: Option<&RawValue>) -> Option<CompactString> {
    let json = raw?.get();
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(CompactString::from(inner));
    }
    serde_json::from_str::<String>(json)
        .ok()
        .map(CompactString::from)
}

/// Ids and accounts are limited in characters, not bytes; a text of at
/// most 64 bytes (nearly every one) needs no counting.
fn within_64_chars(s: &str) -> bool {
    s.len() <= 64 || s.chars().count() <= 64
}

fn valid_symbol(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(line: &str) -> String {
        parse(line, 7).unwrap_err().reason.to_string()
    }

    #[test]
    fn reads_a_limit_order() {
        let msg = parse(
            r#"{"type":"new","order_id":"s1","symbol":"ACME","side":"sell","price":"100.10","qty":5,"ts":1700000000000,"extra":[1]}"#,
            0,
        )
        .unwrap();
        assert_eq!(msg.symbol, "ACME");
        assert_eq!(msg.ts, 1_700_000_000_000);
        assert_eq!(
            msg.command,
            Command::New {
                side: Side::Sell,
                price: Some("100.1".parse().unwrap()),
                qty: Fixed::units(5),
                tif: TimeInForce::Gtc
            }
        );
    }

    #[test]
    fn absent_ts_takes_the_fallback() {
        let msg = parse(r#"{"type":"cancel","order_id":"a","symbol":"X"}"#, 42).unwrap();
        assert_eq!((msg.ts, msg.command), (42, Command::Cancel));
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(reason("not json"), "malformed");
        assert_eq!(reason("[1,2]"), "malformed");
        assert_eq!(reason(r#"{"type":"new"}"#), "missing symbol");
        let base = r#""order_id":"a","symbol":"X""#;
        assert_eq!(reason(&format!(r#"{{{base}}}"#)), "missing type");
        assert_eq!(
            reason(&format!(r#"{{"type":"bid",{base}}}"#)),
            "invalid type"
        );
        assert_eq!(
            reason(&format!(r#"{{"type":"new",{base},"qty":1,"price":1}}"#)),
            "missing side"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"type":"new",{base},"side":"up","qty":1,"price":1}}"#
            )),
            "invalid side"
        );
        assert_eq!(
            reason(&format!(r#"{{"type":"new",{base},"side":"buy","qty":1}}"#)),
            "missing price"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"type":"new",{base},"side":"buy","qty":0,"price":1}}"#
            )),
            "invalid qty"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"type":"new",{base},"side":"buy","qty":1,"price":"-1"}}"#
            )),
            "invalid price"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"type":"new",{base},"side":"buy","qty":1,"price":1.000000001}}"#
            )),
            "price has more than 8 decimals"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"type":"new",{base},"side":"buy","qty":1,"price":1,"tif":"day"}}"#
            )),
            "invalid tif"
        );
        assert_eq!(
            reason(&format!(r#"{{"type":"cancel",{base},"ts":-1}}"#)),
            "invalid ts"
        );
        assert_eq!(
            reason(&format!(r#"{{"type":"cancel",{base},"ts":1.5}}"#)),
            "invalid ts"
        );
        assert_eq!(
            reason(&format!(r#"{{"type":"replace",{base}}}"#)),
            "missing price or qty"
        );
    }

    #[test]
    fn keeps_identity_of_a_rejected_message() {
        let r = parse(
            r#"{"type":"new","order_id":"o\"1","symbol":"ACME","ts":5}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(r.symbol.as_deref(), Some("ACME"));
        assert_eq!(r.order_id.as_deref(), Some("o\"1"));
        assert_eq!(r.ts, 5);
        let bad_symbol = parse(
            r#"{"type":"cancel","order_id":"a","symbol":"NOT VALID"}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(
            (bad_symbol.symbol, bad_symbol.reason),
            (None, Reason::Invalid(Field::Symbol))
        );
        let long = format!(
            r#"{{"type":"cancel","order_id":"a","symbol":"{}"}}"#,
            "A".repeat(17)
        );
        assert_eq!(
            parse(&long, 0).unwrap_err().reason,
            Reason::Invalid(Field::Symbol)
        );
    }

    /// The limits count characters: 64 two-byte ones pass, 65 do not.
    #[test]
    fn ids_and_accounts_hold_up_to_64_characters() {
        let cancel = |id: &str, account: &str| {
            parse(
                &format!(
                    r#"{{"type":"cancel","order_id":"{id}","symbol":"X","account":"{account}"}}"#
                ),
                0,
            )
        };
        let (at_limit, over) = ("é".repeat(64), "é".repeat(65));
        assert!(cancel(&at_limit, &at_limit).is_ok());
        assert_eq!(
            cancel(&over, "a").unwrap_err().reason,
            Reason::Invalid(Field::OrderId)
        );
        assert_eq!(
            cancel("a", &over).unwrap_err().reason,
            Reason::Invalid(Field::Account)
        );
    }

    #[test]
    fn market_orders_need_no_price() {
        let msg = parse(
            r#"{"type":"new","order_id":"m","symbol":"X","side":"buy","order_type":"market","qty":"4"}"#,
            0,
        )
        .unwrap();
        assert!(matches!(msg.command, Command::New { price: None, .. }));
    }
}
