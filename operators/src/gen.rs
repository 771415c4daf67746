//! A seeded synthetic order stream with a realistic mix: resting limits near
//! a drifting mid, IOC, FOK and market orders, cancels and replaces of live
//! orders, a few late timestamps and a few invalid messages.
//!
//! The stream is one global sequence of messages, but each symbol's orders
//! come from that symbol's own random generator and which symbol message `i`
//! belongs to is a pure function of `(seed, i)`. A generator restricted to
//! one partition therefore yields exactly that partition's share of the
//! global stream, which lets every worker generate its own partitions in
//! parallel while the output stays the same for any worker count.
//!
//! Each message is drawn as a typed `Draw` and then either written as the
//! contract's JSON (`orderflow gen`, Kafka) or, in the pipeline's `gen`
//! source, handed over as the order that JSON parses to: generating text
//! only to parse it again cost a fifth of a flat-out run. Only the invalid
//! messages go through the parser, which rejects them as any input.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::decimal::{scaled, Fixed, ONE};
use crate::order::{Account, Command, OrderId, OrderMsg, Side, Symbol, TimeInForce};

#[derive(Clone, Debug)]
pub struct GenSpec {
    /// Messages in the whole stream; `None` for no end.
    pub orders: Option<u64>,
    pub symbols: u32,
    /// Share of messages for the first (hot) symbol, 0..=1.
    pub hot_share: f64,
    pub seed: u64,
    /// Partitions the symbols are spread over (`symbol index % partitions`).
    pub partitions: u32,
    /// Event time of the first message; later ones are 1 ms apart.
    pub start_ts: i64,
    /// Accounts orders belong to (0: orders without one): a few market
    /// makers, who place most resting orders on both sides of every symbol,
    /// and many small accounts, a few of them far busier than the rest.
    pub accounts: u32,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            orders: Some(1_000_000),
            symbols: 100,
            hot_share: 0.3,
            seed: 1,
            partitions: 8,
            start_ts: 1_700_000_000_000,
            accounts: 1_000,
        }
    }
}

/// A piece of a message, appended as the contract's JSON writes it: text as
/// it is, integers and decimals in their shortest exact form. A message is a
/// dozen pieces and the generator writes millions a second, so they go
/// straight into the line rather than through `format!`'s machinery.
trait Piece {
    fn put(self, out: &mut String);
}

impl Piece for &str {
    fn put(self, out: &mut String) {
        out.push_str(self);
    }
}

macro_rules! integer_pieces {
    ($($t:ty),*) => {$(
        impl Piece for $t {
            fn put(self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(self));
            }
        }
    )*};
}
integer_pieces!(i64, u64, u32);

impl Piece for Fixed {
    fn put(self, out: &mut String) {
        out.push_str(scaled(i128::from(self.0), &mut [0; 41]));
    }
}

/// Appends each piece to `out` in turn.
macro_rules! put {
    ($out:expr, $($piece:expr),+ $(,)?) => {{
        $( Piece::put($piece, $out); )+
    }};
}

/// A tick: prices move in steps of 0.01.
const TICK: i64 = ONE / 100;
/// Orders a symbol remembers as cancel and replace targets.
const LIVE: usize = 64;

/// One symbol's order flow.
struct Flow {
    name: Symbol,
    rng: ChaCha8Rng,
    /// Who places each order: a stream of its own, so that the orders
    /// themselves are the same whatever the account count.
    owners: ChaCha8Rng,
    mid: i64,
    next_id: u64,
    live: VecDeque<u64>,
}

impl Flow {
    fn new(seed: u64, index: u32) -> Flow {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x5eed, u64::from(index)));
        let mid = rng.random_range(10..5_000) * ONE;
        Flow {
            name: Symbol::from(symbol_name(index)),
            owners: ChaCha8Rng::seed_from_u64(mix(seed ^ 0xacc0, u64::from(index))),
            rng,
            mid,
            next_id: 0,
            live: VecDeque::new(),
        }
    }

    /// Draws the next message at event time `ts` (before any late shift).
    fn draw(&mut self, ts: i64, accounts: u32) -> Draw {
        let rng = &mut self.rng;
        self.mid = (self.mid + rng.random_range(-1..=1) * TICK).max(100 * TICK);
        let mut ts = ts;
        if rng.random_bool(0.005) {
            // Out of order: some within the allowed lateness, some beyond it.
            ts -= rng.random_range(1_000..20_000);
        }
        let roll = rng.random_range(0..1000);
        if roll < 10 {
            return Draw::Invalid {
                kind: self.rng.random_range(0..6),
                ts,
            };
        }
        if roll < 250 && !self.live.is_empty() {
            let pick = self.live.len() - 1 - rng.random_range(0..self.live.len().min(8));
            let id = self.live[pick];
            let (price, qty) = if roll < 130 {
                self.live.remove(pick);
                return Draw::Cancel { id, ts };
            } else if roll < 200 {
                (None, Some(Fixed(rng.random_range(1..50) * ONE)))
            } else {
                (
                    Some(Fixed(self.mid + rng.random_range(-8..=8) * TICK)),
                    None,
                )
            };
            return Draw::Replace { id, price, qty, ts };
        }
        self.next_id += 1;
        let id = self.next_id;
        let side = if rng.random_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let qty = match rng.random_bool(0.1) {
            true => Fixed(rng.random_range(1..1_000) * ONE / 100),
            false => Fixed(rng.random_range(1..100) * ONE),
        };
        let kind = rng.random_range(0..100);
        let limit = (kind >= 5).then(|| {
            // Buys rest below the mid and sells above, with some crossing.
            let offset = rng.random_range(-3..=12) * TICK;
            let price = Fixed(match side {
                Side::Buy => self.mid - offset,
                Side::Sell => self.mid + offset,
            });
            let tif = match kind {
                5..=14 => TimeInForce::Ioc,
                15..=17 => TimeInForce::Fok,
                _ => TimeInForce::Gtc,
            };
            (price, tif)
        });
        let resting = matches!(limit, Some((_, TimeInForce::Gtc)));
        if resting {
            self.live.push_back(id);
            if self.live.len() > LIVE {
                self.live.pop_front();
            }
        }
        // The draw that named one of 20 accounts before `--accounts`: kept,
        // so that the orders after it stay as they were. It now picks who
        // places the order: a market maker for most resting orders and for
        // a few aggressive ones.
        let maker = rng.random_range(0..20) < if resting { 16 } else { 4 };
        let owner = (accounts > 0).then(|| self.owner(maker, accounts));
        Draw::New(NewOrder {
            id,
            side,
            qty,
            limit,
            owner,
            ts,
        })
    }

    /// One of `accounts`: `mm-1`… for the market makers (about √accounts,
    /// at most 8), `acct-1`… for the rest, skewed to the low numbers.
    fn owner(&mut self, maker: bool, accounts: u32) -> Owner {
        let makers = f64::from(accounts).sqrt().clamp(1.0, 8.0) as u32;
        let small = accounts - makers;
        if maker || small == 0 {
            Owner::Maker(self.owners.random_range(1..=makers))
        } else {
            let u: f64 = self.owners.random();
            Owner::Small(1 + (u * u * u * f64::from(small)) as u32)
        }
    }
}

/// Who places an order: `mm-N` or `acct-N`.
#[derive(Clone, Copy)]
enum Owner {
    Maker(u32),
    Small(u32),
}

/// A drawn `new` order.
struct NewOrder {
    id: u64,
    side: Side,
    qty: Fixed,
    /// Price and time in force; `None` for a market order.
    limit: Option<(Fixed, TimeInForce)>,
    owner: Option<Owner>,
    ts: i64,
}

/// One drawn message of a symbol's flow, before it is written as the
/// contract's JSON or handed to the pipeline as the order that JSON parses
/// to (the generator's own orders need no parsing to be known valid).
enum Draw {
    New(NewOrder),
    Cancel {
        id: u64,
        ts: i64,
    },
    Replace {
        id: u64,
        price: Option<Fixed>,
        qty: Option<Fixed>,
        ts: i64,
    },
    /// A message the parser or the book rejects, only ever handled as text.
    Invalid {
        kind: u32,
        ts: i64,
    },
}

impl Draw {
    /// Appends the message as one JSON line (no newline) to `out`.
    fn write(&self, symbol: &str, out: &mut String) {
        match *self {
            Draw::New(ref new) => {
                put!(out, r#"{"type":"new","order_id":""#, symbol, "-", new.id);
                put!(
                    out,
                    r#"","symbol":""#,
                    symbol,
                    r#"","side":""#,
                    new.side.as_str()
                );
                put!(out, r#"","qty":""#, new.qty, "\"");
                match new.limit {
                    None => out.push_str(r#","order_type":"market""#),
                    Some((price, tif)) => {
                        put!(
                            out,
                            r#","price":""#,
                            price,
                            r#"","tif":""#,
                            tif.as_str(),
                            "\""
                        );
                    }
                }
                if let Some(owner) = new.owner {
                    let (kind, n) = owner.parts();
                    put!(out, r#","account":""#, kind, n, "\"");
                }
                put!(out, r#","ts":"#, new.ts, "}");
            }
            Draw::Cancel { id, ts } => {
                put!(out, r#"{"type":"cancel","order_id":""#, symbol, "-", id);
                put!(out, r#"","symbol":""#, symbol, r#"","ts":"#, ts, "}");
            }
            Draw::Replace { id, price, qty, ts } => {
                put!(out, r#"{"type":"replace","order_id":""#, symbol, "-", id);
                put!(out, r#"","symbol":""#, symbol);
                if let Some(qty) = qty {
                    put!(out, r#"","qty":""#, qty);
                }
                if let Some(price) = price {
                    put!(out, r#"","price":""#, price);
                }
                put!(out, r#"","ts":"#, ts, "}");
            }
            Draw::Invalid { kind, ts } => {
                let (id, rest) = match kind {
                    0 => return put!(out, r#"{"type":"new","symbol":""#, symbol, r#"","#),
                    1 => ("-x", r#"","side":"buy","price":"-1","qty":"1","ts":"#),
                    2 => ("-y", r#"","side":"hold","price":"1","qty":"1","ts":"#),
                    3 => (
                        "-1",
                        r#"","side":"buy","price":"1","qty":"0.123456789","ts":"#,
                    ),
                    _ => {
                        put!(out, r#"{"type":"cancel","order_id":"never-"#, ts);
                        return put!(out, r#"","symbol":""#, symbol, r#"","ts":"#, ts, "}");
                    }
                };
                put!(out, r#"{"type":"new","order_id":""#, symbol, id);
                put!(out, r#"","symbol":""#, symbol, rest, ts, "}");
            }
        }
    }

    /// The order its JSON parses to (`order::parse`), or `None` for an
    /// invalid message, which is only ever read from its text.
    fn order(&self, symbol: &Symbol) -> Option<OrderMsg> {
        let order_id = |id: u64| {
            let mut order_id = OrderId::from(symbol.as_str());
            order_id.push('-');
            order_id.push_str(itoa::Buffer::new().format(id));
            order_id
        };
        let (order_id, command, account, ts) = match *self {
            Draw::New(ref new) => {
                let command = Command::New {
                    side: new.side,
                    price: new.limit.map(|(price, _)| price),
                    qty: new.qty,
                    tif: new.limit.map_or(TimeInForce::Gtc, |(_, tif)| tif),
                };
                let account = new.owner.map(|owner| {
                    let (kind, n) = owner.parts();
                    let mut account = Account::from(kind);
                    account.push_str(itoa::Buffer::new().format(n));
                    account
                });
                (order_id(new.id), command, account, new.ts)
            }
            Draw::Cancel { id, ts } => (order_id(id), Command::Cancel, None, ts),
            Draw::Replace { id, price, qty, ts } => {
                (order_id(id), Command::Replace { price, qty }, None, ts)
            }
            Draw::Invalid { .. } => return None,
        };
        Some(OrderMsg {
            symbol: symbol.clone(),
            order_id,
            command,
            account,
            ts,
        })
    }
}

impl Owner {
    /// The account's name as its prefix and number.
    fn parts(self) -> (&'static str, u32) {
        match self {
            Owner::Maker(n) => ("mm-", n),
            Owner::Small(n) => ("acct-", n),
        }
    }
}

/// The name of symbol `index`: `SYM0000` is the hot one.
pub fn symbol_name(index: u32) -> String {
    format!("SYM{index:04}")
}

/// What [`Generator::next_order`] gives.
pub enum Next {
    Order(OrderMsg),
    /// An invalid message, as text in the line given.
    Line,
    End,
}

/// The message stream of a [`GenSpec`], whole or one partition's share.
pub struct Generator {
    spec: GenSpec,
    partition: Option<u32>,
    next: u64,
    last_symbol: u32,
    flows: Vec<Option<Flow>>,
}

impl Generator {
    /// The whole stream, in global order.
    pub fn new(spec: GenSpec) -> Generator {
        Generator::restricted(spec, None)
    }

    /// Only the messages of symbols in `partition`, in global order.
    pub fn for_partition(spec: GenSpec, partition: u32) -> Generator {
        Generator::restricted(spec, Some(partition))
    }

    fn restricted(spec: GenSpec, partition: Option<u32>) -> Generator {
        let flows = (0..spec.symbols.max(1)).map(|_| None).collect();
        Generator {
            spec,
            partition,
            next: 0,
            last_symbol: 0,
            flows,
        }
    }

    /// Writes the next message into `out` (cleared first); `false` once the
    /// stream has ended.
    pub fn next_into(&mut self, out: &mut String) -> bool {
        out.clear();
        let Some((flow, draw)) = self.next_draw() else {
            return false;
        };
        draw.write(&flow.name, out);
        true
    }

    /// The next message as the pipeline takes it: the order its JSON parses
    /// to, or, for the few invalid messages, its JSON in `line` (cleared
    /// first) for the parser to reject as it would any input.
    pub fn next_order(&mut self, line: &mut String) -> Next {
        line.clear();
        let Some((flow, draw)) = self.next_draw() else {
            return Next::End;
        };
        match draw.order(&flow.name) {
            Some(order) => Next::Order(order),
            None => {
                draw.write(&flow.name, line);
                Next::Line
            }
        }
    }

    /// The next message of this generator's share and the flow it is of.
    fn next_draw(&mut self) -> Option<(&Flow, Draw)> {
        if !self.has_messages() {
            return None;
        }
        loop {
            if self.spec.orders.is_some_and(|n| self.next >= n) {
                return None;
            }
            let i = self.next;
            self.next += 1;
            let symbol = self.symbol_of(i);
            if self
                .partition
                .is_some_and(|p| symbol % self.spec.partitions.max(1) != p)
            {
                continue;
            }
            self.last_symbol = symbol;
            let flow = self.flows[symbol as usize]
                .get_or_insert_with(|| Flow::new(self.spec.seed, symbol));
            let draw = flow.draw(self.spec.start_ts + i as i64, self.spec.accounts);
            return Some((flow, draw));
        }
    }

    /// Whether any message can fall in this generator's partition: one that
    /// no symbol maps to (more partitions than symbols, or every message
    /// for the hot symbol) would otherwise search an endless stream forever.
    fn has_messages(&self) -> bool {
        let Some(p) = self.partition else {
            return true;
        };
        let symbols = self.spec.symbols.max(1);
        match self.spec.hot_share >= 1.0 {
            true => p == 0,
            false => p < symbols,
        }
    }

    /// Messages of the whole stream looked at so far (a progress measure).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The symbol index of the message last written: its name is
    /// [`symbol_name`], its partition `index % partitions`.
    pub fn symbol(&self) -> u32 {
        self.last_symbol
    }

    /// The event time of the message last written, before any late shift.
    pub fn clock(&self) -> i64 {
        self.spec.start_ts + self.next as i64 - 1
    }

    fn symbol_of(&self, i: u64) -> u32 {
        let u = mix(self.spec.seed, i);
        let symbols = self.spec.symbols.max(1);
        // The top 53 bits as a uniform number in [0, 1).
        let unit = (u >> 11) as f64 / (1u64 << 53) as f64;
        if symbols == 1 || unit < self.spec.hot_share {
            0
        } else {
            1 + (mix(u, 1) % u64::from(symbols - 1)) as u32
        }
    }
}

/// SplitMix64's finalizer: a well-spread hash of `(a, b)`.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_add(b.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(mut g: Generator) -> Vec<String> {
        let (mut out, mut buf) = (Vec::new(), String::new());
        while g.next_into(&mut buf) {
            out.push(buf.clone());
        }
        out
    }

    fn spec(orders: u64) -> GenSpec {
        GenSpec {
            orders: Some(orders),
            symbols: 7,
            partitions: 3,
            ..GenSpec::default()
        }
    }

    #[test]
    fn an_endless_streams_partition_without_symbols_ends_at_once() {
        let endless = GenSpec {
            orders: None,
            symbols: 3,
            partitions: 8,
            ..GenSpec::default()
        };
        let mut line = String::new();
        assert!(!Generator::for_partition(endless.clone(), 5).next_into(&mut line));
        assert!(Generator::for_partition(endless.clone(), 2).next_into(&mut line));
        let all_hot = GenSpec {
            hot_share: 1.0,
            ..endless
        };
        assert!(!Generator::for_partition(all_hot.clone(), 1).next_into(&mut line));
        assert!(Generator::for_partition(all_hot, 0).next_into(&mut line));
    }

    #[test]
    fn partitions_split_the_global_stream() {
        let whole = lines(Generator::new(spec(5_000)));
        assert_eq!(whole.len(), 5_000);
        let mut parts: Vec<String> = (0..3)
            .flat_map(|p| lines(Generator::for_partition(spec(5_000), p)))
            .collect();
        let mut sorted = whole.clone();
        parts.sort();
        sorted.sort();
        assert_eq!(parts, sorted);
    }

    #[test]
    fn the_seed_decides_everything() {
        assert_eq!(
            lines(Generator::new(spec(500))),
            lines(Generator::new(spec(500)))
        );
        let other = GenSpec {
            seed: 2,
            ..spec(500)
        };
        assert_ne!(
            lines(Generator::new(spec(500))),
            lines(Generator::new(other))
        );
    }

    proptest::proptest! {
        /// The pipeline takes the generator's orders without parsing them:
        /// each must be exactly what its JSON parses to, and only the
        /// invalid messages come as text.
        #[test]
        fn an_order_is_what_its_json_parses_to(
            seed in proptest::prelude::any::<u64>(),
            accounts in 0u32..3_000,
            hot_share in 0.0f64..1.0,
        ) {
            let spec = GenSpec { seed, accounts, hot_share, ..spec(3_000) };
            let (mut text, mut typed) = (Generator::new(spec.clone()), Generator::new(spec));
            let (mut json, mut line) = (String::new(), String::new());
            let mut orders = 0;
            while text.next_into(&mut json) {
                match typed.next_order(&mut line) {
                    Next::Order(order) => {
                        proptest::prop_assert_eq!(crate::order::parse(&json, -1).ok(), Some(order), "{}", json);
                        orders += 1;
                    }
                    Next::Line => proptest::prop_assert_eq!(&line, &json),
                    Next::End => proptest::prop_assert!(false, "ended before {}", json),
                }
            }
            proptest::prop_assert!(matches!(typed.next_order(&mut line), Next::End));
            proptest::prop_assert!(orders > 2_900, "{} orders of 3,000", orders);
        }
    }

    #[test]
    fn the_mix_has_every_kind_of_message() {
        let all = lines(Generator::new(spec(20_000))).join("\n");
        for needle in [
            r#""type":"cancel""#,
            r#""type":"replace""#,
            r#""tif":"ioc""#,
            r#""tif":"fok""#,
            r#""order_type":"market""#,
            r#""side":"hold""#,
        ] {
            assert!(all.contains(needle), "{needle} missing");
        }
        let hot = all.matches(r#""symbol":"SYM0000""#).count() as f64 / 20_000.0;
        assert!((0.25..0.35).contains(&hot), "hot share {hot}");
    }
}
