//! Positions, exposure and market depth as differential-dataflow views
//! (CONTRACT §3): collections fed from the books' changes, kept exact under
//! retractions by `count_total`, `reduce` and `join`, and emitted as rows
//! per drain of the books' changes (every `--view-interval`, the symbols in
//! turns).
//!
//! Depth and positions stay on their symbol's worker (their arrangements
//! are built with the `Pipeline` contract: the books already sent every
//! symbol to one worker); exposure crosses symbols, so it is keyed by
//! account and exchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::difference::{Abelian, IsZero, Monoid, Semigroup};
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::operators::CountTotal;
use differential_dataflow::trace::implementations::{ValBatcher, ValBuilder, ValSpine};
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::book::{BookOutput, LevelChange, OrderBook};
use crate::dataflow::{Record, Time};
use crate::decimal::{Fixed, Notional, Wide};
use crate::order::{Account, OrderMsg, Side, Symbol};
use crate::output::{Depth, Exposure, Position};

/// What the views are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewSpec {
    /// Price levels per symbol and side in `depth` (`--depth N`).
    pub depth: usize,
    /// How often each symbol's book tells the views what changed
    /// (`--view-interval`; the symbols take turns within it; zero: every
    /// batch). Each positions row costs the same whether one
    /// trade or a thousand made it, so a paced stream of small batches
    /// would otherwise write every holder of a busy symbol per batch.
    pub every: Duration,
}

/// What the books tell the views about one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewChange {
    /// Quantity and orders a price level gained (or lost) in the batch.
    Level { symbol: Symbol, change: LevelChange },
    /// One account's side of a trade.
    Fill {
        symbol: Symbol,
        account: Account,
        fill: Fill,
    },
    /// The symbol's latest trade as (seq, price): +1 for the new one, −1
    /// for the one it replaces.
    Last {
        symbol: Symbol,
        seq: u64,
        price: i64,
        diff: isize,
    },
    /// The symbol's message seq at the end of the batch: what its depth
    /// rows hold after.
    Seq { symbol: Symbol, seq: u64 },
}

/// What the books did since the views last heard: per symbol, level
/// changes summed per price, fills summed per account and the latest trade
/// as it was before. Differential would consolidate the same updates; summed
/// here they cost a hash-map add per order instead of a sort.
#[derive(Default)]
pub struct ViewFeed {
    symbols: FxHashMap<Symbol, SymbolChanges>,
    /// Restored positions, sent once with the next drain (already held).
    seeds: Vec<ViewChange>,
    /// Every account's fills so far per symbol, as of the last drain: what a
    /// checkpoint keeps of the positions view (its arrangements cannot be
    /// written out).
    held: FxHashMap<Symbol, FxHashMap<Account, Fill>>,
}

#[derive(Default)]
struct SymbolChanges {
    /// The symbol's latest trade when the views last heard of it.
    before: Option<(u64, Fixed)>,
    levels: FxHashMap<(Side, i64), Resting>,
    fills: FxHashMap<Account, Fill>,
}

impl ViewFeed {
    /// Starts from a checkpoint's positions of `symbol`.
    pub fn restore(&mut self, symbol: &Symbol, positions: Vec<(Account, Fill)>) {
        self.held
            .insert(symbol.clone(), positions.into_iter().collect());
    }

    /// Applies `msg` to `book`, noting what it changed.
    pub fn apply(&mut self, book: &mut OrderBook, msg: &OrderMsg, out: &mut BookOutput) {
        let changes = self
            .symbols
            .entry(msg.symbol.clone())
            .or_insert_with(|| SymbolChanges {
                before: book.last_trade(),
                ..SymbolChanges::default()
            });
        book.apply(msg, out);
        for change in &out.levels {
            changes
                .levels
                .entry((change.side, change.price))
                .or_default()
                .plus_equals(&Resting {
                    qty: change.qty,
                    orders: change.orders,
                });
        }
        for trade in &out.trades {
            let (buyer, seller) = match trade.taker_side {
                Side::Buy => (&trade.taker_account, &trade.maker_account),
                Side::Sell => (&trade.maker_account, &trade.taker_account),
            };
            for (account, fill) in
                Fill::legs(buyer.as_ref(), seller.as_ref(), trade.price, trade.qty)
            {
                changes.fills.entry(account).or_default().plus_equals(&fill);
            }
        }
    }

    /// A restored book's levels, latest trade and positions, as changes
    /// from nothing.
    pub fn seed(&mut self, book: &OrderBook) {
        let symbol = book.symbol();
        let changes = self.symbols.entry(symbol.clone()).or_default();
        for change in book.levels() {
            changes.levels.insert(
                (change.side, change.price),
                Resting {
                    qty: change.qty,
                    orders: change.orders,
                },
            );
        }
        let held = self.held.get(symbol).into_iter().flatten();
        self.seeds
            .extend(held.map(|(account, fill)| ViewChange::Fill {
                symbol: symbol.clone(),
                account: account.clone(),
                fill: *fill,
            }));
    }

    /// A symbol's fills per account, for a checkpoint (after a drain).
    pub fn positions(&self, symbol: &Symbol) -> Vec<(Account, Fill)> {
        let mut held: Vec<_> = self
            .held
            .get(symbol)
            .into_iter()
            .flatten()
            .map(|(account, fill)| (account.clone(), *fill))
            .collect();
        held.sort_unstable();
        held
    }

    /// Whether nothing waits to be drained.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty() && self.seeds.is_empty()
    }

    /// Everything since their last drain of the symbols `pick` picks, in a
    /// deterministic order, into `out`; their depth rows hold after their
    /// books' current seq.
    pub fn drain(
        &mut self,
        books: &FxHashMap<Symbol, OrderBook>,
        pick: impl Fn(&Symbol) -> bool,
        out: &mut Vec<ViewChange>,
    ) {
        out.append(&mut self.seeds);
        let mut symbols: Vec<_> = self.symbols.extract_if(|symbol, _| pick(symbol)).collect();
        symbols.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (symbol, changes) in symbols {
            let mut levels: Vec<_> = changes.levels.into_iter().collect();
            levels.sort_unstable();
            out.extend(
                levels
                    .into_iter()
                    .filter(|(_, resting)| !resting.is_zero())
                    .map(|((side, price), resting)| ViewChange::Level {
                        symbol: symbol.clone(),
                        change: LevelChange {
                            side,
                            price,
                            qty: resting.qty,
                            orders: resting.orders,
                        },
                    }),
            );
            let mut fills: Vec<_> = changes.fills.into_iter().collect();
            fills.sort_unstable();
            let held = self.held.entry(symbol.clone()).or_default();
            for (account, fill) in fills {
                held.entry(account.clone()).or_default().plus_equals(&fill);
                out.push(ViewChange::Fill {
                    symbol: symbol.clone(),
                    account,
                    fill,
                });
            }
            let book = &books[&symbol];
            let after = book.last_trade();
            if changes.before != after {
                let last = |(seq, price): (u64, Fixed), diff| ViewChange::Last {
                    symbol: symbol.clone(),
                    seq,
                    price: price.0,
                    diff,
                };
                out.extend(changes.before.map(|b| last(b, -1)));
                out.extend(after.map(|a| last(a, 1)));
            }
            out.push(ViewChange::Seq {
                seq: book.msg_seq(),
                symbol,
            });
        }
    }
}

/// A struct of counters as a differential difference type: defined with
/// what a difference type needs (ordered, copied, zero by default, kept in
/// checkpoints), and added, negated and zero field by field (saturating: a
/// sum past `i128` stays at its bound rather than wrapping to the other
/// sign).
macro_rules! additive {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            Default,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
        )]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),+
        }

        impl IsZero for $name {
            fn is_zero(&self) -> bool {
                *self == $name::default()
            }
        }

        impl Semigroup for $name {
            fn plus_equals(&mut self, rhs: &Self) {
                $(self.$field = self.$field.saturating_add(rhs.$field);)+
            }
        }

        impl Monoid for $name {
            fn zero() -> Self {
                $name::default()
            }
        }

        impl Abelian for $name {
            fn negate(&mut self) {
                $(self.$field = self.$field.saturating_neg();)+
            }
        }
    };
}

additive! {
    /// An account's trading in one symbol, summed: the difference type of the
    /// fills collection, so that a key's state is one accumulated value
    /// however many trades made it.
    pub struct Fill {
        pub bought: i128,
        pub sold: i128,
        /// Σ price × qty, 16 fractional digits.
        pub buy_notional: i128,
        pub sell_notional: i128,
        pub trades: i64,
    }
}

impl Fill {
    /// The legs of a trade of `qty` at `price` between a buyer and a seller:
    /// one per account, and one holding both sides for a self-trade.
    pub fn legs(
        buyer: Option<&Account>,
        seller: Option<&Account>,
        price: Fixed,
        qty: Fixed,
    ) -> impl Iterator<Item = (Account, Fill)> {
        let notional = Notional::of(i128::from(price.0), i128::from(qty.0));
        let notional = i128::try_from(notional.0).unwrap_or(i128::MAX);
        let bought = Fill {
            bought: i128::from(qty.0),
            buy_notional: notional,
            trades: 1,
            ..Fill::default()
        };
        let sold = Fill {
            sold: i128::from(qty.0),
            sell_notional: notional,
            trades: 1,
            ..Fill::default()
        };
        let legs: [Option<(Account, Fill)>; 2] = match (buyer, seller) {
            (Some(b), Some(s)) if b == s => [
                Some((
                    b.clone(),
                    Fill {
                        trades: 1,
                        ..bought.plus(&sold)
                    },
                )),
                None,
            ],
            (b, s) => [b.map(|b| (b.clone(), bought)), s.map(|s| (s.clone(), sold))],
        };
        legs.into_iter().flatten()
    }

    fn plus(mut self, other: &Fill) -> Fill {
        self.plus_equals(other);
        self
    }
}

additive! {
    /// Quantity and order count resting at a price: the difference type of the
    /// levels collection.
    pub struct Resting {
        pub qty: i64,
        pub orders: i64,
    }
}

additive! {
    /// One account's exposure sums over its symbols: the difference type of
    /// the exposure collection, each positions row adding its part.
    struct Holdings {
        gross: i128,
        net: i128,
        long: i128,
        short: i128,
        /// Symbols with a non-zero position.
        symbols: i64,
        /// Σ of the rows' seqs.
        version: i64,
    }
}

impl Holdings {
    /// A positions row's part: its seq always, its exposure while open.
    fn of(exposure: i128, open: bool, seq: u64) -> Holdings {
        let version = i64::try_from(seq).unwrap_or(i64::MAX);
        if !open {
            return Holdings {
                version,
                ..Holdings::default()
            };
        }
        Holdings {
            gross: exposure.saturating_abs(),
            net: exposure,
            long: exposure.max(0),
            short: exposure.min(0),
            symbols: 1,
            version,
        }
    }

    /// The part of `diff` copies of the row (−1: its retraction).
    fn times(self, diff: isize) -> Holdings {
        let wide = diff as i128;
        let narrow = diff as i64;
        Holdings {
            gross: self.gross.saturating_mul(wide),
            net: self.net.saturating_mul(wide),
            long: self.long.saturating_mul(wide),
            short: self.short.saturating_mul(wide),
            symbols: self.symbols.saturating_mul(narrow),
            version: self.version.saturating_mul(narrow),
        }
    }
}

/// A positions row as the join makes it: ((account, symbol), summed fills,
/// the symbol's latest trade seq and price).
type PositionRow = ((Account, Symbol), Fill, u64, i64);

/// A depth row: ((symbol, side), (level, price, qty, orders)).
type DepthRow = ((Symbol, Side), (u64, i64, i64, u64));

/// The views of a stream of [`ViewChange`]s.
pub trait Views<'scope> {
    /// Positions, exposure and depth rows, as records for the sinks, each at
    /// the time the books sent the changes that made it.
    fn views(self, spec: ViewSpec) -> StreamVec<'scope, Time, Record>;
}

impl<'scope> Views<'scope> for StreamVec<'scope, Time, ViewChange> {
    fn views(self, spec: ViewSpec) -> StreamVec<'scope, Time, Record> {
        let scope = self.scope();
        let parts = self.partition(4, |change| {
            let part = match change {
                ViewChange::Level { .. } => 0,
                ViewChange::Fill { .. } => 1,
                ViewChange::Last { .. } => 2,
                ViewChange::Seq { .. } => 3,
            };
            (part, change)
        });
        let [levels, fills, lasts, seqs]: [_; 4] = parts.try_into().expect("four parts");

        let levels = updates(levels, |change| match change {
            ViewChange::Level { symbol, change } => Some((
                ((symbol, change.side), change.price),
                Resting {
                    qty: change.qty,
                    orders: change.orders,
                },
            )),
            _ => None,
        });
        let depth = reduce_local(levels, "Depth", move |key, levels, out| {
            let (_, side): &(Symbol, Side) = key;
            // Levels come in ascending price: bids are best from the top.
            let best: Box<dyn Iterator<Item = _>> = match side {
                Side::Buy => Box::new(levels.iter().rev()),
                Side::Sell => Box::new(levels.iter()),
            };
            for (level, (price, resting)) in best.take(spec.depth).enumerate() {
                let orders = u64::try_from(resting.orders).unwrap_or(0);
                out.push(((level as u64 + 1, **price, resting.qty, orders), 1));
            }
        });

        let fills = updates(fills, |change| match change {
            ViewChange::Fill {
                symbol,
                account,
                fill,
            } => Some((((symbol, account), ()), fill)),
            _ => None,
        });
        // An account's fills in a symbol are its key's accumulated
        // difference: `count_total` reads it off the trace with one seek per
        // changed key, where `reduce` would replay the key's history and
        // keep an output trace besides.
        let held = arrange_local(fills, "Fills")
            .count_total_core::<isize>()
            .map(|((symbol, account), fill)| (symbol, (account, fill)));
        let lasts = updates(lasts, |change| match change {
            ViewChange::Last {
                symbol,
                seq,
                price,
                diff,
            } => Some(((symbol, (seq, price)), diff)),
            _ => None,
        });
        let positions = arrange_local(held, "Held").join_core(
            arrange_local(lasts, "Lasts"),
            |symbol, (account, fill), (seq, price)| {
                Some(((account.clone(), symbol.clone()), *fill, *seq, *price))
            },
        );

        // Each positions row adds its part to its account's sums, and its
        // retraction takes it away: an account's exposure is its key's
        // accumulated difference, read as the fills' are, one seek per
        // changed account however many symbols it holds.
        let exposure = positions
            .inner
            .clone()
            .map(|(((account, symbol), fill, seq, price), time, diff)| {
                let exposure = position(account.clone(), symbol, fill, seq, price).exposure();
                let part = Holdings::of(exposure.0, fill.bought != fill.sold, seq);
                (account, time, part.times(diff))
            })
            .as_collection()
            .count_total_core::<isize>();

        let seqs = seqs.flat_map(|change| match change {
            ViewChange::Seq { symbol, seq } => Some((symbol, seq)),
            _ => None,
        });
        // Positions and exposure carry their own versions: no seqs.
        let none = || empty(scope);
        let positions = settle(
            positions.inner,
            none(),
            |rows: Vec<PositionRow>, _, _, out| {
                for ((account, symbol), fill, seq, price) in rows {
                    out.push(Record::Position(position(
                        account, symbol, fill, seq, price,
                    )));
                }
            },
        );
        let exposure = settle(
            exposure.inner,
            none(),
            |rows: Vec<(Account, Holdings)>, _, _, out| {
                for (account, held) in rows {
                    out.push(Record::Exposure(Exposure {
                        account,
                        gross: Wide(held.gross),
                        net: Wide(held.net),
                        long: Wide(held.long),
                        short: Wide(held.short),
                        symbols: u64::try_from(held.symbols).unwrap_or(0),
                        version: u64::try_from(held.version).unwrap_or(0),
                    }));
                }
            },
        );
        // Every level of both sides of each symbol that fed the views, at
        // its seq, changed or not: another run's rows of the same input
        // (a killed one before a restart, a replay) were cut at other
        // turns, and a level that changed and changed back between two of
        // this run's turns would otherwise keep that run's passing state as
        // its highest seq.
        let mut current: BTreeMap<(Symbol, Side, u64), (i64, i64, u64)> = BTreeMap::new();
        let depth = settle(
            depth.inner,
            seqs,
            move |added: Vec<DepthRow>, removed, seqs, out| {
                for ((symbol, side), (level, ..)) in removed {
                    current.remove(&(symbol, side, level));
                }
                for ((symbol, side), (level, price, qty, orders)) in added {
                    current.insert((symbol, side, level), (price, qty, orders));
                }
                for (symbol, seq) in seqs {
                    for side in [Side::Buy, Side::Sell] {
                        for level in 1..=spec.depth as u64 {
                            let key = (symbol.clone(), side, level);
                            let (price, qty, orders) = match current.get(&key) {
                                Some(&(price, qty, orders)) => (Some(Fixed(price)), qty, orders),
                                None => (None, 0, 0),
                            };
                            out.push(Record::Depth(Depth {
                                symbol: symbol.clone(),
                                side,
                                level,
                                price,
                                qty: Fixed(qty),
                                orders,
                                seq: *seq,
                            }));
                        }
                    }
                }
            },
        );
        use timely::dataflow::operators::Concatenate;
        scope.concatenate([positions, exposure, depth])
    }
}

fn position(account: Account, symbol: Symbol, fill: Fill, seq: u64, price: i64) -> Position {
    Position {
        account,
        symbol,
        bought: Wide(fill.bought),
        sold: Wide(fill.sold),
        buy_notional: fill.buy_notional,
        sell_notional: fill.sell_notional,
        trades: u64::try_from(fill.trades).unwrap_or(0),
        last_price: Fixed(price),
        seq,
    }
}

/// The changes of a stream as a collection at the stream's own times.
fn updates<'scope, D, R>(
    stream: StreamVec<'scope, Time, ViewChange>,
    pick: impl Fn(ViewChange) -> Option<(D, R)> + 'static,
) -> VecCollection<'scope, Time, D, R>
where
    D: Clone + 'static,
    R: Clone + 'static,
{
    stream
        .unary(Pipeline, "Updates", |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    if let Some(cap) = cap.retain_least(0) {
                        let time = *cap.time();
                        let picked = data.drain(..).filter_map(&pick);
                        output
                            .session(&cap)
                            .give_iterator(picked.map(|(d, r)| (d, time, r)));
                    }
                });
            }
        })
        .as_collection()
}

/// An arrangement by key on the worker the data is on: the books already
/// put each symbol on one worker.
fn arrange_local<'scope, K, V, R>(
    collection: VecCollection<'scope, Time, (K, V), R>,
    name: &str,
) -> Arranged<'scope, TraceAgent<ValSpine<K, V, Time, R>>>
where
    K: ExchangeData,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
{
    arrange_core::<_, _, ValBatcher<K, V, Time, R>, ValSpine<K, V, Time, R>>(
        collection.inner,
        Pipeline,
        name,
        ValBatcher::new,
    )
}

/// `reduce` over a local arrangement (see [`arrange_local`]).
fn reduce_local<'scope, K, V, R, V2, L>(
    collection: VecCollection<'scope, Time, (K, V), R>,
    name: &str,
    logic: L,
) -> VecCollection<'scope, Time, (K, V2), isize>
where
    K: ExchangeData,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
    V2: ExchangeData,
    L: FnMut(&K, &[(&V, R)], &mut Vec<(V2, isize)>) + 'static,
{
    arrange_local(collection, name)
        .reduce_abelian::<_, ValBuilder<K, V2, Time, isize>, ValSpine<K, V2, Time, isize>, _, _>(
            name,
            logic,
            |vec, key, upds| {
                vec.clear();
                vec.extend(upds.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
            },
        )
        .as_collection(|k, v| (k.clone(), v.clone()))
}

/// Holds each time's updates until the frontier passes it, then hands the
/// rows that time added and the rows it only took away (each consolidated,
/// in order), with the symbols' message seqs of that time, to `emit`: what a
/// view's changes become as records.
fn settle<'scope, D>(
    changes: StreamVec<'scope, Time, (D, Time, isize)>,
    seqs: StreamVec<'scope, Time, (Symbol, u64)>,
    mut emit: impl FnMut(Vec<D>, Vec<D>, &BTreeMap<Symbol, u64>, &mut Vec<Record>) + 'static,
) -> StreamVec<'scope, Time, Record>
where
    D: Ord + Clone + 'static,
{
    type Pending<D> = BTreeMap<Time, (Capability<Time>, Vec<(D, isize)>, BTreeMap<Symbol, u64>)>;
    changes.binary_frontier(seqs, Pipeline, Pipeline, "Settle", |_, _| {
        let mut pending: Pending<D> = BTreeMap::new();
        let mut records = Vec::new();
        move |(input, frontier), (seqs, seqs_frontier), output| {
            input.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(0) else {
                    return;
                };
                for (d, t, r) in data.drain(..) {
                    pending
                        .entry(t)
                        .or_insert_with(|| (cap.delayed(&t), Vec::new(), BTreeMap::new()))
                        .1
                        .push((d, r));
                }
            });
            seqs.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(0) else {
                    return;
                };
                let time = *cap.time();
                let entry = pending
                    .entry(time)
                    .or_insert_with(|| (cap, Vec::new(), BTreeMap::new()));
                entry.2.extend(data.drain(..));
            });
            while let Some(entry) = pending.first_entry() {
                let time = *entry.key();
                if frontier.less_equal(&time) || seqs_frontier.less_equal(&time) {
                    break;
                }
                let (cap, mut updates, seqs) = entry.remove();
                consolidate(&mut updates);
                let (added, removed): (Vec<_>, Vec<_>) =
                    updates.into_iter().partition(|(_, r)| *r > 0);
                emit(
                    added.into_iter().map(|(d, _)| d).collect(),
                    removed.into_iter().map(|(d, _)| d).collect(),
                    &seqs,
                    &mut records,
                );
                output.session(&cap).give_iterator(records.drain(..));
            }
        }
    })
}
