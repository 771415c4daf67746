//! The order book against an obviously-correct model: a flat list of resting
//! orders, sorted from scratch for every match. Random order streams must
//! give the same events, trades, top of book and resting orders.

use operators::book::{BookOutput, OrderBook};
use operators::decimal::Fixed;
use operators::order::{Command, OrderMsg, Reason, Side, TimeInForce};
use operators::output::Status;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Resting {
    id: String,
    side: Side,
    price: i64,
    qty: i64,
    priority: u64,
}

#[derive(Default)]
struct Model {
    resting: Vec<Resting>,
    known: std::collections::HashSet<String>,
    clock: u64,
    /// (maker, taker, price, qty)
    trades: Vec<(String, String, i64, i64)>,
}

impl Model {
    /// Orders of `side` that an order with `limit` (None: market) crosses, best first.
    fn crossing(&self, side: Side, limit: Option<i64>) -> Vec<Resting> {
        let mut levels: Vec<Resting> = self
            .resting
            .iter()
            .filter(|r| r.side == side)
            .filter(|r| match (limit, side) {
                (None, _) => true,
                (Some(l), Side::Sell) => r.price <= l,
                (Some(l), Side::Buy) => r.price >= l,
            })
            .cloned()
            .collect();
        levels.sort_by_key(|r| {
            (
                if side == Side::Sell {
                    r.price
                } else {
                    -r.price
                },
                r.priority,
            )
        });
        levels
    }

    fn take(&mut self, taker: &str, side: Side, limit: Option<i64>, mut qty: i64) -> i64 {
        for maker in self.crossing(side.opposite(), limit) {
            if qty == 0 {
                break;
            }
            let fill = qty.min(maker.qty);
            qty -= fill;
            self.trades
                .push((maker.id.clone(), taker.to_string(), maker.price, fill));
            let r = self.resting.iter_mut().find(|r| r.id == maker.id).unwrap();
            r.qty -= fill;
        }
        self.resting.retain(|r| r.qty > 0);
        qty
    }

    fn rest(&mut self, id: &str, side: Side, price: i64, qty: i64) {
        self.clock += 1;
        self.resting.push(Resting {
            id: id.to_string(),
            side,
            price,
            qty,
            priority: self.clock,
        });
    }

    fn apply(&mut self, msg: &OrderMsg) -> (Status, Option<Reason>) {
        let id = msg.order_id.as_str();
        match msg.command {
            Command::New {
                side,
                price,
                qty,
                tif,
            } => {
                if !self.known.insert(id.to_string()) {
                    return (Status::Rejected, Some(Reason::Duplicate));
                }
                let limit = price.map(|p| p.0);
                if limit.is_none() && self.resting.iter().all(|r| r.side == side) {
                    return (Status::Expired, Some(Reason::NoLiquidity));
                }
                let available: i64 = self
                    .crossing(side.opposite(), limit)
                    .iter()
                    .map(|r| r.qty)
                    .sum();
                if tif == TimeInForce::Fok && available < qty.0 {
                    return (Status::Expired, Some(Reason::Unfillable));
                }
                let left = self.take(id, side, limit, qty.0);
                match (left, limit, tif) {
                    (0, _, _) => (Status::Filled, None),
                    (_, Some(p), TimeInForce::Gtc) => {
                        self.rest(id, side, p, left);
                        (Status::Accepted, None)
                    }
                    _ => (Status::Expired, Some(Reason::Remainder)),
                }
            }
            Command::Cancel => match self.resting.iter().position(|r| r.id == id) {
                Some(i) => {
                    self.resting.remove(i);
                    (Status::Cancelled, None)
                }
                None => (Status::Rejected, Some(Reason::Unknown)),
            },
            Command::Replace { price, qty } => {
                let Some(i) = self.resting.iter().position(|r| r.id == id) else {
                    return (Status::Rejected, Some(Reason::Unknown));
                };
                let old = self.resting[i].clone();
                let new_price = price.map_or(old.price, |p| p.0);
                let new_qty = qty.map_or(old.qty, |q| q.0);
                if new_price == old.price && new_qty <= old.qty {
                    self.resting[i].qty = new_qty;
                } else {
                    self.resting.remove(i);
                    let left = self.take(id, old.side, Some(new_price), new_qty);
                    if left > 0 {
                        self.rest(id, old.side, new_price, left);
                    }
                }
                (Status::Replaced, None)
            }
        }
    }

    /// Resting orders in the book's inspection order: bids best first, then asks.
    fn resting(&self) -> Vec<(String, Side, i64, i64)> {
        let mut all = self.crossing(Side::Buy, None);
        all.extend(self.crossing(Side::Sell, None));
        all.into_iter()
            .map(|r| (r.id, r.side, r.price, r.qty))
            .collect()
    }
}

fn message() -> impl Strategy<Value = OrderMsg> {
    (
        0..10u8,
        0..16u8,
        any::<bool>(),
        95..=105i64,
        1..=10i64,
        0..4u8,
        0..2u8,
    )
        .prop_map(|(kind, id, buy, price, qty, tif, opt)| {
            let side = if buy { Side::Buy } else { Side::Sell };
            let command = match kind {
                0..=5 => Command::New {
                    side,
                    // tif 3 means a market order.
                    price: (tif != 3).then_some(Fixed::units(price)),
                    qty: Fixed::units(qty),
                    tif: [
                        TimeInForce::Gtc,
                        TimeInForce::Ioc,
                        TimeInForce::Fok,
                        TimeInForce::Ioc,
                    ][tif as usize],
                },
                6 | 7 => Command::Cancel,
                _ => Command::Replace {
                    price: (opt == 0 || kind == 9).then_some(Fixed::units(price)),
                    qty: (opt == 1 || kind == 9).then_some(Fixed::units(qty)),
                },
            };
            OrderMsg {
                symbol: "X".into(),
                order_id: format!("o{id}").into(),
                command,
                account: None,
                ts: 0,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn book_matches_the_model(messages in proptest::collection::vec(message(), 1..200)) {
        let mut book = OrderBook::new("X".into());
        let mut model = Model::default();
        let mut out = BookOutput::default();
        let mut trades = Vec::new();
        for (n, msg) in messages.iter().enumerate() {
            book.apply(msg, &mut out);
            let expected = model.apply(msg);
            let event = out.events.pop().unwrap();
            prop_assert_eq!((event.status, event.reason), expected, "message {} {:?}", n, msg);
            prop_assert_eq!(event.seq, Some(n as u64 + 1));
            trades.append(&mut out.trades);
            out.clear();
            let (bid, ask) = book.top();
            let best = |side: Side| {
                let levels = model.crossing(side, None);
                levels.first().map(|b| {
                    let qty: i64 = levels.iter().filter(|r| r.price == b.price).map(|r| r.qty).sum();
                    (Fixed(b.price), Fixed(qty))
                })
            };
            prop_assert_eq!((bid, ask), (best(Side::Buy), best(Side::Sell)));
        }
        let got: Vec<_> = trades.iter().map(|t| (t.maker_order_id.to_string(), t.taker_order_id.to_string(), t.price.0, t.qty.0)).collect();
        prop_assert_eq!(got, model.trades.clone());
        prop_assert!(trades.iter().enumerate().all(|(i, t)| t.seq == i as u64 + 1), "trade seq has gaps");
        let resting: Vec<_> = book.resting().into_iter().map(|(id, side, p, q)| (id.to_string(), side, p.0, q.0)).collect();
        prop_assert_eq!(resting, model.resting());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A book restored from a snapshot taken after any message answers the
    /// rest of the stream exactly as the book that was never stopped.
    #[test]
    fn a_restored_book_continues_as_the_original(
        messages in proptest::collection::vec(message(), 1..200),
        cut in 0usize..200,
    ) {
        let cut = cut.min(messages.len());
        let mut original = OrderBook::new("X".into());
        let mut out = BookOutput::default();
        for msg in &messages[..cut] {
            original.apply(msg, &mut out);
        }
        out.clear();
        let snapshot = original.snapshot();
        let mut restored = OrderBook::restore(snapshot.clone());
        // The same state; retired ids come in the set's own order.
        let sorted = |mut state: operators::book::BookState| {
            state.retired.sort_unstable();
            state
        };
        prop_assert_eq!(sorted(restored.snapshot()), sorted(snapshot));
        let mut again = BookOutput::default();
        for msg in &messages[cut..] {
            original.apply(msg, &mut out);
            restored.apply(msg, &mut again);
            prop_assert_eq!(&out.events, &again.events);
            prop_assert_eq!(&out.trades, &again.trades);
            prop_assert_eq!(&out.bbo, &again.bbo);
            out.clear();
            again.clear();
        }
        prop_assert_eq!(original.resting(), restored.resting());
    }
}
