//! The limit order book of one symbol, and matching (CONTRACT §2).
//!
//! Laid out as exchange-core and LMAX books are: resting orders live in a
//! slab (`Vec<Slot>`) reused through a free list, so a warm book does not
//! allocate per order; each price level is a FIFO queue threaded through the
//! slab (O(1) append, O(1) cancel from the middle). Levels live in a slab of
//! their own, found by price through a hash table (an order joins a level,
//! and knows the one it leaves, without a walk down a tree), and each side's
//! levels sit in a `BTreeMap` for ordered best-price access, touched only
//! when a level opens or empties. A hash table of slot numbers, hashed by
//! the id in the slot, gives O(1) cancel and replace. In a deep book, where
//! each of those lookups misses the cache, the caller fetches the lines of
//! the next messages' orders and levels ahead ([`OrderBook::prefetch`]).
//! Ids that no longer rest move to a separate set, kept for the life of the
//! stream so that a duplicate `new` is caught: the table that cancels and
//! replaces hit stays the size of the book.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use crate::decimal::Fixed;
use crate::ids::{id_hash, prefetch, IdSet, SlotTable};
use crate::order::{
    Account, Command, OrderId, OrderMsg, Reason, Rejected, Side, Symbol, TimeInForce,
};
use crate::output::{Bbo, Event, Status, Trade};

/// Slot index meaning "none": end of a queue, or an id no longer resting.
const NIL: u32 = u32::MAX;

/// A resting order. `prev`/`next` link it into its level's FIFO queue.
#[derive(Debug)]
struct Slot {
    id: OrderId,
    account: Option<Account>,
    side: Side,
    price: i64,
    remaining: i64,
    prev: u32,
    next: u32,
    /// The level it rests at.
    level: u32,
}

/// One price level: total quantity, order count and the ends of its FIFO queue.
#[derive(Debug)]
struct Level {
    side: Side,
    price: i64,
    qty: i64,
    orders: i64,
    head: u32,
    tail: u32,
}

/// The levels of one side, as numbers in the book's level slab, keyed so
/// that ascending order is priority order: asks by price, bids by negated
/// price. The best is also kept beside the tree: every message reads it
/// (the top of book before and after, each match), where the tree's first
/// entry is a walk down its left edge.
#[derive(Debug, Default)]
struct Ladder {
    tree: BTreeMap<i64, u32>,
    best: Option<(i64, u32)>,
}

impl Ladder {
    fn insert(&mut self, key: i64, l: u32) {
        self.tree.insert(key, l);
        if self.best.is_none_or(|(best, _)| key < best) {
            self.best = Some((key, l));
        }
    }

    fn remove(&mut self, key: i64) {
        self.tree.remove(&key);
        if self.best.is_some_and(|(best, _)| best == key) {
            self.best = self.tree.first_key_value().map(|(&k, &l)| (k, l));
        }
    }
}

fn key(side: Side, price: i64) -> i64 {
    match side {
        Side::Buy => -price,
        Side::Sell => price,
    }
}

/// Puts `item` in a freed place of `slab` if there is one, at its end if
/// not, and returns its number.
fn fill<T>(slab: &mut Vec<T>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(at) => {
            slab[at as usize] = item;
            at
        }
        None => {
            slab.push(item);
            (slab.len() - 1) as u32
        }
    }
}

/// The hash a level is filed under in [`OrderBook::by_price`].
fn price_hash(price: i64) -> u64 {
    FxBuildHasher.hash_one(price)
}

/// A change to one price level: quantity and order count added (negative
/// when taken away). What market depth is aggregated from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelChange {
    pub side: Side,
    /// Fixed-point units.
    pub price: i64,
    pub qty: i64,
    pub orders: i64,
}

/// What the caller collects from the book; vectors are reused between calls.
#[derive(Debug, Default)]
pub struct BookOutput {
    pub events: Vec<Event>,
    pub trades: Vec<Trade>,
    pub bbo: Vec<Bbo>,
    pub levels: Vec<LevelChange>,
}

impl BookOutput {
    pub fn clear(&mut self) {
        self.events.clear();
        self.trades.clear();
        self.bbo.clear();
        self.levels.clear();
    }
}

/// Orders a book rests before [`OrderBook::prefetch`] fetches anything: a
/// shallower book's slots and tables stay in the cache, where a prefetch
/// only costs its address arithmetic.
const DEEP: usize = 1 << 14;

/// How many messages apart the stages of a prefetch run.
const AHEAD: usize = 16;

/// The messages whose cache lines to fetch before applying `messages[at]`,
/// each with its stage: the one `AHEAD` later has its neighbours fetched,
/// the one twice as far its slot, three times as far its entry, four times
/// as far the message itself.
pub fn ahead<T>(messages: &[T], at: usize) -> impl Iterator<Item = (&T, Fetch)> {
    [
        Fetch::Neighbours,
        Fetch::Order,
        Fetch::Entry,
        Fetch::Message,
    ]
    .into_iter()
    .zip(1..)
    .filter_map(move |(fetch, n)| Some((messages.get(at + n * AHEAD)?, fetch)))
}

/// The stages of [`OrderBook::prefetch`], farthest ahead first: the message
/// itself (its id and price are where the next stage starts, and a stream
/// read at three spaced places outran the hardware's own prefetching), the
/// id table's entry (and the price table's), then the order's slot and the
/// level it goes to (found by the entries), then its neighbours in the
/// queue, its level, and the tail it joins (found by the slot and the
/// level), each stage needing the one before it in the cache already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    Message,
    Entry,
    Order,
    Neighbours,
}

type Top = (Option<(i64, i64)>, Option<(i64, i64)>);

/// A book as a checkpoint keeps it: what it means, not how it is laid out.
/// Resting orders are listed in priority order (bids best first, then asks
/// best first, each level's queue front to back), so entering them again in
/// that order restores every level's time priority.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BookState {
    pub symbol: Symbol,
    pub msg_seq: u64,
    pub trade_seq: u64,
    /// The price of the latest trade, in fixed-point units.
    pub last_price: Option<i64>,
    /// (id, side, price, remaining, account) in fixed-point units.
    pub resting: Vec<(OrderId, Side, i64, i64, Option<Account>)>,
    pub retired: Vec<OrderId>,
    /// What each account traded in this symbol, when the views are kept:
    /// what positions are rebuilt from on a restart.
    pub positions: Vec<(Account, crate::views::Fill)>,
}

/// One side's best level as (price, quantity), if the side has any.
pub type Quote = Option<(Fixed, Fixed)>;

#[derive(Debug)]
pub struct OrderBook {
    symbol: Symbol,
    bids: Ladder,
    asks: Ladder,
    /// Price levels, reused through a free list as slots are.
    levels: Vec<Level>,
    free_levels: Vec<u32>,
    /// Levels found by price (of either side: a bid and an ask at one price
    /// would have crossed): an order joins or leaves a level without a walk
    /// down the ladder, which in a deep book misses the cache at each node.
    by_price: SlotTable,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Resting orders' slots, found by the id each slot holds: eight bytes
    /// an order rather than a second copy of its id, and a lookup's id
    /// check reads the slot its caller reads next anyway.
    resting: SlotTable,
    /// Ids accepted by a `new` that no longer rest.
    retired: IdSet,
    /// Input messages seen, rejected ones included.
    msg_seq: u64,
    trade_seq: u64,
    last_price: Option<i64>,
}

impl OrderBook {
    pub fn new(symbol: Symbol) -> OrderBook {
        OrderBook {
            symbol,
            bids: Ladder::default(),
            asks: Ladder::default(),
            levels: Vec::new(),
            free_levels: Vec::new(),
            by_price: SlotTable::default(),
            slots: Vec::new(),
            free: Vec::new(),
            resting: SlotTable::default(),
            retired: IdSet::default(),
            msg_seq: 0,
            trade_seq: 0,
            last_price: None,
        }
    }

    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }

    /// The book's whole state, for a checkpoint.
    pub fn snapshot(&self) -> BookState {
        BookState {
            symbol: self.symbol.clone(),
            msg_seq: self.msg_seq,
            trade_seq: self.trade_seq,
            last_price: self.last_price,
            resting: self
                .queue()
                .map(|s| {
                    (
                        s.id.clone(),
                        s.side,
                        s.price,
                        s.remaining,
                        s.account.clone(),
                    )
                })
                .collect(),
            retired: self.retired.iter().map(OrderId::from).collect(),
            positions: Vec::new(),
        }
    }

    /// The book a [`snapshot`](Self::snapshot) was taken of.
    pub fn restore(state: BookState) -> OrderBook {
        let mut book = OrderBook::new(state.symbol);
        book.msg_seq = state.msg_seq;
        book.trade_seq = state.trade_seq;
        book.last_price = state.last_price;
        let mut unseen = BookOutput::default();
        for (id, side, price, remaining, account) in state.resting {
            book.rest(id, account, side, price, remaining, &mut unseen);
        }
        book.retired = state.retired.into_iter().collect();
        book
    }

    /// Best bid and best ask as (price, level quantity).
    pub fn top(&self) -> (Quote, Quote) {
        let (bid, ask) = self.top_raw();
        let fixed = |l: Option<(i64, i64)>| l.map(|(p, q)| (Fixed(p), Fixed(q)));
        (fixed(bid), fixed(ask))
    }

    /// Resting orders in priority order, each as (id, side, price, remaining):
    /// bids best first, then asks best first. For tests and inspection.
    pub fn resting(&self) -> Vec<(OrderId, Side, Fixed, Fixed)> {
        self.queue()
            .map(|s| (s.id.clone(), s.side, Fixed(s.price), Fixed(s.remaining)))
            .collect()
    }

    /// Resting orders' slots in priority order.
    fn queue(&self) -> impl Iterator<Item = &Slot> {
        [&self.bids, &self.asks]
            .into_iter()
            .flat_map(|ladder| ladder.tree.values())
            .map(|&level| &self.levels[level as usize])
            .flat_map(|level| {
                std::iter::successors(
                    (level.head != NIL).then(|| &self.slots[level.head as usize]),
                    |s| (s.next != NIL).then(|| &self.slots[s.next as usize]),
                )
            })
    }

    /// Every price level as a [`LevelChange`] from an empty book: what
    /// depth starts from when a book is restored.
    pub fn levels(&self) -> impl Iterator<Item = LevelChange> + '_ {
        [&self.bids, &self.asks]
            .into_iter()
            .flat_map(|ladder| ladder.tree.values())
            .map(|&l| {
                let level = &self.levels[l as usize];
                LevelChange {
                    side: level.side,
                    price: level.price,
                    qty: level.qty,
                    orders: level.orders,
                }
            })
    }

    /// Messages seen, rejected ones included: the `seq` of the latest.
    pub fn msg_seq(&self) -> u64 {
        self.msg_seq
    }

    /// The latest trade's `seq` and price.
    pub fn last_trade(&self) -> Option<(u64, Fixed)> {
        self.last_price.map(|p| (self.trade_seq, Fixed(p)))
    }

    /// Whether the book rests enough orders for [`prefetch`](Self::prefetch)
    /// to fetch anything.
    pub fn is_deep(&self) -> bool {
        self.slots.len() - self.free.len() >= DEEP
    }

    /// Hints the cache lines that applying `msg` will read: in a deep book
    /// each is a miss, and a caller that knows its next messages fetches
    /// them in stages ([`Fetch`]), farthest first, while earlier messages
    /// are matched. Only a hint: a stale guess costs a wasted fetch.
    pub fn prefetch(&self, msg: &OrderMsg, fetch: Fetch) {
        if !self.is_deep() {
            return;
        }
        // A caller whose messages sit in a wrapper fetches the wrapper
        // instead: finding the book for a message reads it.
        if fetch == Fetch::Message {
            return prefetch(msg);
        }
        let id = id_hash(&msg.order_id);
        let price = match msg.command {
            Command::New { price, .. } | Command::Replace { price, .. } => {
                price.map(|p| price_hash(p.0))
            }
            Command::Cancel => None,
        };
        if fetch == Fetch::Entry {
            self.resting.prefetch(id);
            if let Some(price) = price {
                self.by_price.prefetch(price);
            }
            return;
        }
        let slot = self
            .resting
            .likely(id)
            .and_then(|at| self.slots.get(at as usize));
        let level = price
            .and_then(|p| self.by_price.likely(p))
            .and_then(|l| self.levels.get(l as usize));
        if fetch == Fetch::Order {
            slot.into_iter().for_each(prefetch);
            level.into_iter().for_each(prefetch);
            return;
        }
        // The order leaves its queue and level, and joins another's tail:
        // of those slots only the link it rewrites is fetched, one line
        // each where a whole slot may span two.
        let slot_at = |at: u32| self.slots.get(at as usize);
        let leaves = slot.into_iter().flat_map(|s| {
            let prev = slot_at(s.prev).map(|p| &p.next);
            [prev, slot_at(s.next).map(|n| &n.prev)]
        });
        let joins = level.and_then(|l| slot_at(l.tail)).map(|t| &t.next);
        for link in leaves.chain([joins]).flatten() {
            prefetch(link);
        }
        if let Some(l) = slot.and_then(|s| self.levels.get(s.level as usize)) {
            prefetch(l);
        }
    }

    /// Applies one validated message, appending its event, trades and (if the
    /// top of book changed) its bbo to `out`.
    pub fn apply(&mut self, msg: &OrderMsg, out: &mut BookOutput) {
        self.msg_seq += 1;
        let before = self.top_raw();
        let (status, reason) = match msg.command {
            Command::New { .. } if self.known(&msg.order_id) => {
                (Status::Rejected, Some(Reason::Duplicate))
            }
            Command::New {
                side,
                price,
                qty,
                tif,
            } => {
                let outcome = self.enter(msg, side, price, qty, tif, out);
                if outcome.0 != Status::Accepted {
                    self.retired.insert(&msg.order_id);
                }
                outcome
            }
            Command::Cancel => self.cancel(&msg.order_id, out),
            Command::Replace { price, qty } => self.replace(msg, price, qty, out),
        };
        out.events.push(Event {
            symbol: Some(self.symbol.clone()),
            order_id: Some(msg.order_id.clone()),
            seq: Some(self.msg_seq),
            status,
            reason,
            ts: msg.ts,
            raw: None,
            origin: (0, 0),
        });
        let after = self.top_raw();
        if after != before {
            let (bid, ask) = after;
            out.bbo.push(Bbo {
                symbol: self.symbol.clone(),
                seq: self.msg_seq,
                bid: bid.map(|l| Fixed(l.0)),
                bid_qty: bid.map(|l| Fixed(l.1)),
                ask: ask.map(|l| Fixed(l.0)),
                ask_qty: ask.map(|l| Fixed(l.1)),
                ts: msg.ts,
            });
        }
    }

    /// Counts a message of this symbol that failed validation and records its event.
    pub fn reject(&mut self, rejected: &Rejected, out: &mut BookOutput) {
        self.msg_seq += 1;
        out.events.push(Event {
            symbol: Some(self.symbol.clone()),
            order_id: rejected.order_id.clone(),
            seq: Some(self.msg_seq),
            status: Status::Rejected,
            reason: Some(rejected.reason),
            ts: rejected.ts,
            raw: None,
            origin: (0, 0),
        });
    }

    fn top_raw(&self) -> Top {
        let best = |ladder: &Ladder| {
            let (_, l) = ladder.best?;
            let level = &self.levels[l as usize];
            Some((level.price, level.qty))
        };
        (best(&self.bids), best(&self.asks))
    }

    /// Whether a `new` with this id was accepted before, resting or not.
    fn known(&self, id: &OrderId) -> bool {
        self.find(id).is_some() || self.retired.contains(id)
    }

    /// The slot of the resting order with this id.
    fn find(&self, id: &str) -> Option<u32> {
        self.resting
            .find(id_hash(id), |at| self.slots[at as usize].id == id)
    }

    /// A new order that passed the duplicate check: match, then rest or expire.
    fn enter(
        &mut self,
        msg: &OrderMsg,
        side: Side,
        price: Option<Fixed>,
        qty: Fixed,
        tif: TimeInForce,
        out: &mut BookOutput,
    ) -> (Status, Option<Reason>) {
        let opposite = self.ladder(side.opposite());
        if price.is_none() && opposite.best.is_none() {
            return (Status::Expired, Some(Reason::NoLiquidity));
        }
        // A limit crosses a level whose key is at or below its own key on
        // the opposite ladder; a market order crosses everything.
        let limit = price.map_or(i64::MAX, |p| key(side.opposite(), p.0));
        if tif == TimeInForce::Fok && !self.fillable(side.opposite(), limit, qty.0) {
            return (Status::Expired, Some(Reason::Unfillable));
        }
        let taker = (&msg.order_id, msg.account.as_ref());
        let remaining = self.take(side, limit, qty.0, taker, msg.ts, out);
        match (remaining, price, tif) {
            (0, _, _) => (Status::Filled, None),
            (_, Some(p), TimeInForce::Gtc) => {
                self.rest(
                    msg.order_id.clone(),
                    msg.account.clone(),
                    side,
                    p.0,
                    remaining,
                    out,
                );
                (Status::Accepted, None)
            }
            _ => (Status::Expired, Some(Reason::Remainder)),
        }
    }

    fn cancel(&mut self, id: &OrderId, out: &mut BookOutput) -> (Status, Option<Reason>) {
        let Some(at) = self.find(id) else {
            return (Status::Rejected, Some(Reason::Unknown));
        };
        self.detach(at, out);
        self.retire(at);
        (Status::Cancelled, None)
    }

    fn replace(
        &mut self,
        msg: &OrderMsg,
        price: Option<Fixed>,
        qty: Option<Fixed>,
        out: &mut BookOutput,
    ) -> (Status, Option<Reason>) {
        let Some(at) = self.find(&msg.order_id) else {
            return (Status::Rejected, Some(Reason::Unknown));
        };
        let slot = &self.slots[at as usize];
        let (side, old_price, old_qty) = (slot.side, slot.price, slot.remaining);
        let new_price = price.map_or(old_price, |p| p.0);
        let new_qty = qty.map_or(old_qty, |q| q.0);
        if new_price == old_price && new_qty <= old_qty {
            // A pure decrease keeps its place in the queue.
            let slot = &mut self.slots[at as usize];
            slot.remaining = new_qty;
            self.levels[slot.level as usize].qty -= old_qty - new_qty;
            out.levels.push(LevelChange {
                side,
                price: old_price,
                qty: new_qty - old_qty,
                orders: 0,
            });
            return (Status::Replaced, None);
        }
        // Anything else loses priority: out of the book, then in again as a
        // new GTC limit order that may cross. What rests again keeps its
        // slot, and so its place in the id table.
        let account = self.slots[at as usize].account.take();
        self.detach(at, out);
        let limit = key(side.opposite(), new_price);
        let taker = (&msg.order_id, account.as_ref());
        let remaining = self.take(side, limit, new_qty, taker, msg.ts, out);
        if remaining == 0 {
            self.retire(at);
        } else {
            let slot = &mut self.slots[at as usize];
            slot.account = account;
            slot.price = new_price;
            slot.remaining = remaining;
            self.place(at, out);
        }
        (Status::Replaced, None)
    }

    /// Matches an incoming order of `side` against the opposite ladder while
    /// its levels cross `limit`; returns the quantity left.
    fn take(
        &mut self,
        side: Side,
        limit: i64,
        mut qty: i64,
        (taker, taker_account): (&OrderId, Option<&Account>),
        ts: i64,
        out: &mut BookOutput,
    ) -> i64 {
        while qty > 0 {
            let Some((best, l)) = self.ladder(side.opposite()).best else {
                break;
            };
            if best > limit {
                break;
            }
            let level = &mut self.levels[l as usize];
            let at = level.head;
            let maker = &mut self.slots[at as usize];
            let fill = qty.min(maker.remaining);
            maker.remaining -= fill;
            level.qty -= fill;
            qty -= fill;
            self.trade_seq += 1;
            self.last_price = Some(maker.price);
            let done = maker.remaining == 0;
            level.orders -= i64::from(done);
            out.levels.push(LevelChange {
                side: maker.side,
                price: maker.price,
                qty: -fill,
                orders: -i64::from(done),
            });
            out.trades.push(Trade {
                symbol: self.symbol.clone(),
                seq: self.trade_seq,
                price: Fixed(maker.price),
                qty: Fixed(fill),
                maker_order_id: maker.id.clone(),
                taker_order_id: taker.clone(),
                taker_side: side,
                ts,
                maker_account: maker.account.clone(),
                taker_account: taker_account.cloned(),
            });
            if done {
                // The head is done: pop it from the queue and free its slot.
                let next = maker.next;
                level.head = next;
                if next == NIL {
                    self.drop_level(l);
                } else {
                    self.slots[next as usize].prev = NIL;
                }
                self.retire(at);
            }
        }
        qty
    }

    /// Whether `side` holds at least `qty` at levels crossing `limit`.
    fn fillable(&self, side: Side, limit: i64, qty: i64) -> bool {
        let mut available = 0;
        for &l in self.ladder(side).tree.range(..=limit).map(|(_, l)| l) {
            available += self.levels[l as usize].qty;
            if available >= qty {
                return true;
            }
        }
        false
    }

    /// Rests a new order at the back of its level's queue.
    fn rest(
        &mut self,
        id: OrderId,
        account: Option<Account>,
        side: Side,
        price: i64,
        qty: i64,
        out: &mut BookOutput,
    ) {
        let hash = id_hash(&id);
        let slot = Slot {
            id,
            account,
            side,
            price,
            remaining: qty,
            prev: NIL,
            next: NIL,
            level: NIL,
        };
        let at = fill(&mut self.slots, &mut self.free, slot);
        self.place(at, out);
        self.resting.insert(hash, at);
    }

    /// Links the order in slot `at` at the back of its level's queue,
    /// opening the level if it is new.
    fn place(&mut self, at: u32, out: &mut BookOutput) {
        let slot = &self.slots[at as usize];
        let (side, price, qty) = (slot.side, slot.price, slot.remaining);
        out.levels.push(LevelChange {
            side,
            price,
            qty,
            orders: 1,
        });
        let l = match self.level_at(side, price) {
            Some(l) => l,
            None => self.open_level(side, price),
        };
        let level = &mut self.levels[l as usize];
        let tail = std::mem::replace(&mut level.tail, at);
        level.qty += qty;
        level.orders += 1;
        if tail == NIL {
            level.head = at;
        } else {
            self.slots[tail as usize].next = at;
        }
        let slot = &mut self.slots[at as usize];
        slot.next = NIL;
        slot.prev = tail;
        slot.level = l;
    }

    /// The level of `side` at `price`, if there is one.
    fn level_at(&self, side: Side, price: i64) -> Option<u32> {
        let levels = &self.levels;
        self.by_price.find(price_hash(price), |l| {
            let level = &levels[l as usize];
            level.price == price && level.side == side
        })
    }

    /// An empty level of `side` at `price`, on its ladder.
    fn open_level(&mut self, side: Side, price: i64) -> u32 {
        let level = Level {
            side,
            price,
            qty: 0,
            orders: 0,
            head: NIL,
            tail: NIL,
        };
        let l = fill(&mut self.levels, &mut self.free_levels, level);
        self.ladder_mut(side).insert(key(side, price), l);
        self.by_price.insert(price_hash(price), l);
        l
    }

    /// Takes an emptied level off its ladder and frees it.
    fn drop_level(&mut self, l: u32) {
        let Level { side, price, .. } = self.levels[l as usize];
        self.ladder_mut(side).remove(key(side, price));
        self.by_price.remove(price_hash(price), l);
        self.free_levels.push(l);
    }

    /// Frees the slot of an order that stopped resting (already out of its
    /// level), moving its id from the id table to the retired set.
    fn retire(&mut self, at: u32) {
        let id = std::mem::take(&mut self.slots[at as usize].id);
        self.resting.remove(id_hash(&id), at);
        self.retired.insert(&id);
        self.free.push(at);
    }

    /// Takes a slot out of its level (dropping the level when it empties).
    /// The slot, the free list and the id table are the caller's to update.
    fn detach(&mut self, at: u32, out: &mut BookOutput) {
        let Slot {
            side,
            price,
            remaining,
            prev,
            next,
            level: l,
            ..
        } = self.slots[at as usize];
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let level = &mut self.levels[l as usize];
        level.qty -= remaining;
        level.orders -= 1;
        out.levels.push(LevelChange {
            side,
            price,
            qty: -remaining,
            orders: -1,
        });
        if level.head == at {
            level.head = next;
        }
        if level.tail == at {
            level.tail = prev;
        }
        if level.head == NIL {
            self.drop_level(l);
        }
    }

    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}
