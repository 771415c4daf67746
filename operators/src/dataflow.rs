//! The timely operators: order books and candles as extension traits on
//! streams, each owning its state, with the frontier as the only notion of
//! progress.
//!
//! Times are batch numbers (`u64`). Within a batch, messages are applied in
//! `(partition, offset)` order once the frontier has passed it, so a book sees
//! its symbol's messages in arrival order however the workers interleaved.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHasher};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;
use timely::scheduling::Activator;

use crate::book::{ahead, BookOutput, BookState, Fetch, OrderBook};
use crate::order::Symbol;
use crate::output::{Bbo, Candle, Depth, Event, Exposure, Late, Position, Status, Trade, Values};
use crate::partition::{Sequenced, WatermarkState};
use crate::views::{ViewChange, ViewFeed, ViewSpec};
use crate::window::{CandleSpec, Windows, WindowsState};

/// Batch number: the timely time of everything read in one source round.
pub type Time = u64;

/// Everything Orderflow emits, as one stream for the sinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Event(Event),
    Trade(Trade),
    Bbo(Bbo),
    Candle(Candle),
    Late(Late),
    Position(Position),
    Exposure(Exposure),
    Depth(Depth),
}

impl Record {
    /// The key the record belongs to (its Kafka key): the symbol, or the
    /// account of an exposure; `None` for the event of a message without a
    /// readable symbol.
    pub fn symbol(&self) -> Option<&str> {
        match self {
            Record::Event(e) => e.symbol.as_deref(),
            Record::Trade(t) => Some(&t.symbol),
            Record::Bbo(b) => Some(&b.symbol),
            Record::Candle(c) => Some(&c.symbol),
            Record::Late(l) => Some(&l.trade.symbol),
            Record::Position(p) => Some(&p.symbol),
            Record::Exposure(e) => Some(&e.account),
            Record::Depth(d) => Some(&d.symbol),
        }
    }

    /// Its output's index in [`OUTPUTS`](crate::output::OUTPUTS).
    pub fn output(&self) -> usize {
        match self {
            Record::Event(_) => 0,
            Record::Trade(_) => 1,
            Record::Bbo(_) => 2,
            Record::Candle(_) => 3,
            Record::Late(_) => 4,
            Record::Position(_) => 5,
            Record::Exposure(_) => 6,
            Record::Depth(_) => 7,
        }
    }

    /// A row of a view: it follows the views' cadence, not a message.
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Record::Position(_) | Record::Exposure(_) | Record::Depth(_)
        )
    }

    /// Hands the record's values to `v` in its output's column order.
    pub fn values(&self, v: &mut impl Values) {
        match self {
            Record::Event(e) => e.values(v),
            Record::Trade(t) => t.values(v),
            Record::Bbo(b) => b.values(v),
            Record::Candle(c) => c.values(v),
            Record::Late(l) => l.values(v),
            Record::Position(p) => p.values(v),
            Record::Exposure(e) => e.values(v),
            Record::Depth(d) => d.values(v),
        }
    }
}

/// What the books tell the candles: trades, with each partition's watermark
/// marked before the trades of the first message that moved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookRecord {
    /// `partition`'s watermark is now `watermark`.
    Progress { partition: u32, watermark: i64 },
    /// A trade, with the partition its taker message came from: the
    /// partition whose watermark decides its candles.
    Trade { partition: u32, trade: Trade },
}

/// What the books emit, by where it goes.
pub struct BookStreams<'scope> {
    /// Events and bbo, straight to the sinks: candles do not look at them.
    pub records: StreamVec<'scope, Time, Record>,
    /// Trades and watermarks, for the candles.
    pub trades: StreamVec<'scope, Time, BookRecord>,
    /// What the views need, at their cadence (empty without them).
    pub changes: StreamVec<'scope, Time, ViewChange>,
}

/// Where a partition stands at the end of a batch, broadcast to every
/// worker: its watermark closes windows even on workers that saw none of the
/// batch, and the rest is what a restart needs to read on from exactly there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMark {
    pub partition: u32,
    pub watermark: i64,
    /// The offset of the partition's next message.
    pub next_offset: u64,
    /// Where that message starts in a file source (0 for other sources).
    pub next_byte: u64,
    pub state: WatermarkState,
}

/// What the sources tell every worker, besides orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    Mark(PartitionMark),
    /// Snapshot the operators' state once this time is complete: every
    /// operator has then seen exactly the messages up to each partition's
    /// latest mark.
    Checkpoint(u64),
}

/// One worker's share of a checkpoint, from one operator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Snapshot {
    /// The books the worker owns.
    Books(Vec<BookState>),
    /// The worker's open windows per partition, and every partition's
    /// latest mark (each worker sees all of them).
    Windows {
        windows: Vec<(u32, WindowsState)>,
        marks: Vec<PartitionMark>,
    },
}

/// Receives each snapshot with the time and checkpoint id it was taken at.
pub type OnSnapshot = Box<dyn FnMut(Time, u64, Snapshot)>;

/// Operator state to start from: a checkpoint's parts, whatever worker
/// count wrote them. Each worker keeps what it now owns.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub books: Vec<BookState>,
    pub windows: Vec<(u32, WindowsState)>,
    pub marks: Vec<PartitionMark>,
}

/// The worker that owns a symbol's book; the same in every process.
pub fn route(msg: &Sequenced) -> u64 {
    match msg.symbol() {
        Some(symbol) => symbol_hash(symbol),
        None => {
            let mut h = FxHasher::default();
            (msg.partition, msg.offset).hash(&mut h);
            h.finish()
        }
    }
}

fn symbol_hash(symbol: &Symbol) -> u64 {
    let mut h = FxHasher::default();
    symbol.as_bytes().hash(&mut h);
    h.finish()
}

/// The worker of `peers` whose book `symbol` has: what timely's exchange
/// does with [`route`]'s hash.
pub fn owner(symbol: &Symbol, peers: usize) -> usize {
    (symbol_hash(symbol) % peers as u64) as usize
}

/// Holds each time's data under a capability until the frontier passes it,
/// as the chunks it came in: taken, not copied (orders and records are a
/// hundred bytes and more each).
struct Stash<D> {
    times: BTreeMap<Time, (Capability<Time>, Vec<Vec<D>>)>,
}

impl<D> Stash<D> {
    fn new() -> Self {
        Stash {
            times: BTreeMap::new(),
        }
    }

    fn push(&mut self, cap: Capability<Time>, data: &mut Vec<D>) {
        let time = *cap.time();
        self.times
            .entry(time)
            .or_insert_with(|| (cap, Vec::new()))
            .1
            .push(std::mem::take(data));
    }

    /// The earliest time held.
    fn first(&self) -> Option<Time> {
        self.times.keys().next().copied()
    }

    /// Removes and returns, in time order, the times no input can still send.
    fn ready(
        &mut self,
        frontiers: &[&MutableAntichain<Time>],
    ) -> Vec<(Capability<Time>, Vec<Vec<D>>)> {
        let mut ready = Vec::new();
        while let Some(entry) = self.times.first_entry() {
            if frontiers.iter().any(|f| f.less_equal(entry.key())) {
                break;
            }
            ready.push(entry.remove());
        }
        ready
    }
}

/// One order book per symbol.
pub trait Books<'scope> {
    /// Exchanges messages by symbol and applies them to their books in
    /// partition order, emitting events and bbo changes, trades, and (if
    /// `views`) what the differential views need, at their cadence. Starts from
    /// `restored` (this worker's books of a checkpoint) and hands a snapshot
    /// of its books to `on_snapshot` at each checkpoint in `control`.
    fn books(
        self,
        control: StreamVec<'scope, Time, Control>,
        restored: Vec<BookState>,
        on_snapshot: OnSnapshot,
        views: Option<ViewSpec>,
    ) -> BookStreams<'scope>;
}

impl<'scope> Books<'scope> for StreamVec<'scope, Time, Sequenced> {
    fn books(
        self,
        control: StreamVec<'scope, Time, Control>,
        restored: Vec<BookState>,
        mut on_snapshot: OnSnapshot,
        views: Option<ViewSpec>,
    ) -> BookStreams<'scope> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new("Books".to_owned(), scope);
        let mut input = builder.new_input(self, Exchange::new(route));
        let mut control = builder.new_input(control, Pipeline);
        let (trades_out, trades) = builder.new_output();
        let (changes_out, changes) = builder.new_output();
        let (records_out, records) = builder.new_output();
        let mut trades_out = OutputBuilder::from(trades_out);
        let mut changes_out = OutputBuilder::from(changes_out);
        let mut records_out = OutputBuilder::from(records_out);
        let activator = scope.activator_for(builder.operator_info().address);
        builder.build(move |_caps| {
            let mut stash = Stash::new();
            let mut controls = Stash::new();
            // Each time's capabilities for the views' and the records' outputs.
            let mut view_caps: BTreeMap<Time, Capability<Time>> = BTreeMap::new();
            let mut record_caps: BTreeMap<Time, Capability<Time>> = BTreeMap::new();
            let mut feed = ViewFeed::default();
            let mut cadence = views.map(|spec| Cadence::new(spec.every, activator));
            let mut books: FxHashMap<_, OrderBook> = restored
                .into_iter()
                .map(|mut state| {
                    feed.restore(&state.symbol, std::mem::take(&mut state.positions));
                    (state.symbol.clone(), OrderBook::restore(state))
                })
                .collect();
            // Books deep enough to fetch ahead for, kept count of as they
            // grow and shrink rather than looked over per batch (a venue
            // has thousands of symbols).
            let mut deep = books.values().filter(|b| b.is_deep()).count();
            // Restored books seed the views once, in the first batch.
            let mut seed = views.map(|_| books.keys().cloned().collect::<Vec<_>>());
            let mut watermarks: FxHashMap<u32, i64> = FxHashMap::default();
            let mut out = BookOutput::default();
            // A time's messages as (partition, offset, chunk, index).
            let mut order: Vec<(u32, u64, u32, u32)> = Vec::new();
            move |frontiers| {
                let (frontier, control_frontier) = (&frontiers[0], &frontiers[1]);
                let mut trades_out = trades_out.activate();
                let mut changes = changes_out.activate();
                let mut records_out = records_out.activate();
                input.for_each(|cap, data| {
                    if cadence.is_some() {
                        if let Some(c) = cap.retain_least(1) {
                            view_caps.entry(*c.time()).or_insert(c);
                        }
                    }
                    if let Some(c) = cap.retain_least(2) {
                        record_caps.entry(*c.time()).or_insert(c);
                    }
                    if let Some(cap) = cap.retain_least(0) {
                        stash.push(cap, data);
                    }
                });
                control.for_each(|cap, data| {
                    if let Some(cap) = cap.retain_least(0) {
                        controls.push(cap, data);
                    }
                });
                for (time, (cap, chunks, control)) in
                    ready(&mut stash, &mut controls, [frontier, control_frontier])
                {
                    // Partition order across the chunks, sorted by index.
                    order.clear();
                    for (c, chunk) in chunks.iter().enumerate() {
                        let at = chunk.iter().enumerate();
                        order.extend(at.map(|(i, m)| (m.partition, m.offset, c as u32, i as u32)));
                    }
                    order.sort_unstable();
                    let mut session = trades_out.session(&cap);
                    let record_cap = record_caps.remove(&time);
                    let mut records = record_cap.as_ref().map(|c| records_out.session(c));
                    if !order.is_empty() {
                        for symbol in seed.take().into_iter().flatten() {
                            feed.seed(&books[&symbol]);
                        }
                    }
                    for (at, &(_, _, c, i)) in order.iter().enumerate() {
                        if deep > 0 {
                            prefetch(&books, &chunks, &order, at);
                        }
                        let seq = &chunks[c as usize][i as usize];
                        let known = watermarks.entry(seq.partition).or_insert(i64::MIN);
                        if *known != seq.watermark {
                            *known = seq.watermark;
                            session.give(BookRecord::Progress {
                                partition: seq.partition,
                                watermark: seq.watermark,
                            });
                        }
                        out.clear();
                        match (&seq.msg, seq.symbol()) {
                            (Ok(msg), _) => {
                                let book = book(&mut books, &msg.symbol);
                                let was_deep = book.is_deep();
                                match cadence {
                                    Some(_) => feed.apply(book, msg, &mut out),
                                    None => book.apply(msg, &mut out),
                                }
                                deep = deep + usize::from(book.is_deep()) - usize::from(was_deep);
                            }
                            (Err(rejected), Some(symbol)) => {
                                book(&mut books, symbol).reject(rejected, &mut out)
                            }
                            (Err(rejected), None) => out.events.push(Event {
                                symbol: None,
                                order_id: rejected.order_id.clone(),
                                seq: None,
                                status: Status::Rejected,
                                reason: Some(rejected.reason),
                                ts: rejected.ts,
                                raw: rejected.raw.clone(),
                                origin: (0, 0),
                            }),
                        }
                        let partition = seq.partition;
                        let origin = (seq.partition, seq.offset);
                        let events = out
                            .events
                            .drain(..)
                            .map(|event| Record::Event(Event { origin, ..event }));
                        let bbo = out.bbo.drain(..).map(Record::Bbo);
                        if let Some(records) = records.as_mut() {
                            records.give_iterator(events.chain(bbo));
                        }
                        let trades = out.trades.drain(..);
                        session.give_iterator(
                            trades.map(|trade| BookRecord::Trade { partition, trade }),
                        );
                    }
                    if let Some(cadence) = cadence.as_mut() {
                        if let Some(cap) = view_caps.remove(&time) {
                            cadence.hold(cap);
                        }
                        // A checkpoint keeps the positions as of a drain.
                        let all = checkpoints(&control).next().is_some();
                        cadence.tick(all, &mut feed, &books, &mut changes);
                    }
                    for id in checkpoints(&control) {
                        let mut states: Vec<BookState> = books
                            .values()
                            .map(|book| BookState {
                                positions: feed.positions(book.symbol()),
                                ..book.snapshot()
                            })
                            .collect();
                        states.sort_unstable_by(|a, b| a.symbol.cmp(&b.symbol));
                        on_snapshot(*cap.time(), id, Snapshot::Books(states));
                    }
                }
                // Idle or at the end, what waits is sent when due.
                if let Some(cadence) = cadence.as_mut() {
                    cadence.tick(frontier.is_empty(), &mut feed, &books, &mut changes);
                }
            }
        });
        BookStreams {
            records,
            trades,
            changes,
        }
    }
}

/// The groups of symbols that take turns in telling the views: each turn's
/// work (re-marking every holder of its symbols, through the views' join
/// and sums) runs in one step of the worker, and the books' records
/// queued behind it wait as long.
const TURNS: u32 = 100;

/// When the books tell the views, and of which symbols. The symbols take
/// turns in [`TURNS`] groups, one group every `every / TURNS` of wall-clock
/// time, so each symbol's changes reach the views every `every` while the
/// work of re-marking its holders' positions comes in small parts. A symbol
/// joins the groups in turn as its book opens, so the groups are as even
/// as the symbols allow. Zero `every`: every
/// symbol at every batch; every symbol before each checkpoint and at the
/// end of the input. In between, the capability of the first batch since
/// the last turn waits for the changes: holding it delays only the views, as
/// the books' own records go out on another output, and the views' frontier
/// moves once a turn rather than once a batch (each move costs every
/// differential operator its progress and every arrangement a batch).
struct Cadence {
    every: Duration,
    /// The group whose turn is next, and when it comes (never, for an
    /// interval past any clock: then the end will do).
    turn: u64,
    next: Option<Instant>,
    /// Each book's group, in the order the books opened.
    groups: FxHashMap<Symbol, u64>,
    /// The time the next turn's changes go out at.
    cap: Option<Capability<Time>>,
    /// The latest batch's, later than `cap`: where `cap` moves after a turn.
    latest: Option<Capability<Time>>,
    activator: Activator,
    /// When the operator asked to be woken, so it asks once per turn.
    wake: Option<Instant>,
    sent: Vec<ViewChange>,
}

impl Cadence {
    fn new(every: Duration, activator: Activator) -> Cadence {
        Cadence {
            every,
            turn: 0,
            next: Instant::now().checked_add(every / TURNS),
            groups: FxHashMap::default(),
            cap: None,
            latest: None,
            activator,
            wake: None,
            sent: Vec::new(),
        }
    }

    /// The changes gathered so far may go out at the first batch's `cap`
    /// since the last turn; a later batch's is kept for after the turn.
    fn hold(&mut self, cap: Capability<Time>) {
        match self.cap {
            None => self.cap = Some(cap),
            Some(_) => self.latest = Some(cap),
        }
    }

    /// Sends what `feed` gathered of the symbols whose turn has come, or of
    /// `all`, to `changes`; lets the capability go once nothing waits, and
    /// otherwise asks to be woken for the next turn.
    fn tick(
        &mut self,
        all: bool,
        feed: &mut ViewFeed,
        books: &FxHashMap<Symbol, OrderBook>,
        changes: &mut OutputBuilderSession<'_, Time, CapacityContainerBuilder<Vec<ViewChange>>>,
    ) {
        let Some(cap) = self.cap.as_ref() else {
            return;
        };
        let now = Instant::now();
        let turn = if all || self.every.is_zero() {
            None
        } else if self.next.is_some_and(|next| next <= now) {
            let turn = self.turn;
            self.turn = (turn + 1) % u64::from(TURNS);
            self.next = now.checked_add(self.every / TURNS);
            Some(turn)
        } else {
            self.wake(now);
            return;
        };
        // Books only open: a count that differs means new ones.
        if self.groups.len() != books.len() {
            for symbol in books.keys() {
                let next = self.groups.len() as u64 % u64::from(TURNS);
                self.groups.entry(symbol.clone()).or_insert(next);
            }
        }
        let groups = &self.groups;
        feed.drain(
            books,
            |symbol| turn.is_none_or(|t| groups.get(symbol).is_none_or(|g| *g == t)),
            &mut self.sent,
        );
        if !self.sent.is_empty() {
            changes.session(cap).give_container(&mut self.sent);
        }
        if feed.is_empty() {
            self.cap = None;
            self.latest = None;
        } else {
            if let Some(latest) = self.latest.take() {
                self.cap = Some(latest);
            }
            self.wake(now);
        }
    }

    /// Asks to be woken for the next turn, once per turn.
    fn wake(&mut self, now: Instant) {
        if let Some(at) = self.next.filter(|at| self.wake != Some(*at)) {
            self.wake = Some(at);
            self.activator
                .activate_after(at.saturating_duration_since(now));
        }
    }
}

/// The checkpoints a time's control records ask for.
fn checkpoints(control: &[Control]) -> impl Iterator<Item = u64> + '_ {
    control.iter().filter_map(|c| match c {
        Control::Checkpoint(id) => Some(*id),
        Control::Mark(_) => None,
    })
}

/// The times both inputs have passed, in order, each with both inputs' data:
/// the first's as the chunks it came in, the second's (controls, a few per
/// batch) in one.
#[allow(clippy::type_complexity)]
fn ready<A, B>(
    a: &mut Stash<A>,
    b: &mut Stash<B>,
    frontiers: [&MutableAntichain<Time>; 2],
) -> BTreeMap<Time, (Capability<Time>, Vec<Vec<A>>, Vec<B>)> {
    let mut ready = BTreeMap::new();
    for (cap, chunks) in a.ready(&frontiers) {
        ready.insert(*cap.time(), (cap, chunks, Vec::new()));
    }
    for (cap, chunks) in b.ready(&frontiers) {
        ready
            .entry(*cap.time())
            .or_insert_with(|| (cap, Vec::new(), Vec::new()))
            .2 = chunks.into_iter().flatten().collect();
    }
    ready
}

/// Folds one record of the books into its partition's windows and passes
/// on what it yields: the record itself, then any candles and late trades.
fn fold(
    item: BookRecord,
    partitions: &mut BTreeMap<u32, Windows>,
    spec: &CandleSpec,
    candles: &mut Vec<Candle>,
    late: &mut Vec<Late>,
    mut give: impl FnMut(Record),
) {
    match item {
        BookRecord::Progress {
            partition,
            watermark,
        } => windows(partitions, partition, spec).advance(watermark, candles),
        BookRecord::Trade { partition, trade } => {
            windows(partitions, partition, spec).add(&trade, candles, late);
            give(Record::Trade(trade));
        }
    }
    candles.drain(..).map(Record::Candle).for_each(&mut give);
    late.drain(..).map(Record::Late).for_each(give);
}

fn book<'a>(
    books: &'a mut FxHashMap<crate::order::Symbol, OrderBook>,
    symbol: &crate::order::Symbol,
) -> &'a mut OrderBook {
    if !books.contains_key(symbol) {
        books.insert(symbol.clone(), OrderBook::new(symbol.clone()));
    }
    books.get_mut(symbol).expect("inserted")
}

/// Fetches ahead the cache lines of the messages after `order[at]` that
/// deep books will read ([`OrderBook::prefetch`]); `order` lists a time's
/// messages as (partition, offset, chunk, index) of `chunks`.
fn prefetch(
    books: &FxHashMap<crate::order::Symbol, OrderBook>,
    chunks: &[Vec<Sequenced>],
    order: &[(u32, u64, u32, u32)],
    at: usize,
) {
    for (&(_, _, c, i), fetch) in ahead(order, at) {
        let sequenced = &chunks[c as usize][i as usize];
        if fetch == Fetch::Message {
            crate::ids::prefetch(sequenced);
            continue;
        }
        if let Ok(msg) = &sequenced.msg {
            if let Some(book) = books.get(&msg.symbol) {
                book.prefetch(msg, fetch);
            }
        }
    }
}

/// Event-time candles from the trades of [`Books`].
pub trait Candles<'scope> {
    /// Folds trades into windows per partition, emitting candles (and `late`
    /// trades) as the partition watermarks in the stream and in `control`'s
    /// marks pass window ends. The trades pass through. Starts
    /// from `restored` (keeping the windows of the symbols `worker` of
    /// `peers` owns) and hands a snapshot of its windows and of every
    /// partition's latest mark to `on_snapshot` at each checkpoint. When the
    /// input ends, every window closes if `close_at_end` (a run that will
    /// resume from a checkpoint keeps them open instead).
    fn candles(
        self,
        control: StreamVec<'scope, Time, Control>,
        spec: CandleSpec,
        restored: Restored,
        on_snapshot: OnSnapshot,
        close_at_end: bool,
    ) -> StreamVec<'scope, Time, Record>;
}

impl<'scope> Candles<'scope> for StreamVec<'scope, Time, BookRecord> {
    fn candles(
        self,
        control: StreamVec<'scope, Time, Control>,
        spec: CandleSpec,
        restored: Restored,
        mut on_snapshot: OnSnapshot,
        close_at_end: bool,
    ) -> StreamVec<'scope, Time, Record> {
        let (worker, peers) = (self.scope().index(), self.scope().peers());
        self.binary_frontier(control, Pipeline, Pipeline, "Candles", |cap, _info| {
            let mut records = Stash::new();
            let mut controls = Stash::new();
            let mut partitions: BTreeMap<u32, Windows> = BTreeMap::new();
            let mut marks: BTreeMap<u32, PartitionMark> = BTreeMap::new();
            for mark in restored.marks {
                windows(&mut partitions, mark.partition, &spec)
                    .advance(mark.watermark, &mut Vec::new());
                marks.insert(mark.partition, mark);
            }
            for (partition, state) in restored.windows {
                windows(&mut partitions, partition, &spec)
                    .restore(state, |symbol| owner(symbol, peers) == worker)
                    .expect("a checkpoint's intervals are checked against --intervals at start-up");
            }
            let mut candles = Vec::new();
            let mut late = Vec::new();
            // Held at the inputs' frontier, for the final flush only.
            let mut hold = Some(cap);
            move |(input, frontier), (control, control_frontier), output| {
                control.for_each(|cap, data| {
                    if let Some(cap) = cap.retain_least(0) {
                        controls.push(cap, data);
                    }
                });
                let inputs = [frontier, control_frontier];
                for (_, (cap, batch, control)) in ready(&mut records, &mut controls, inputs) {
                    let mut session = output.session(&cap);
                    for item in batch.into_iter().flatten() {
                        fold(item, &mut partitions, &spec, &mut candles, &mut late, |r| {
                            session.give(r)
                        });
                    }
                    for item in &control {
                        if let Control::Mark(mark) = item {
                            windows(&mut partitions, mark.partition, &spec)
                                .advance(mark.watermark, &mut candles);
                            marks.insert(mark.partition, *mark);
                        }
                    }
                    session.give_iterator(candles.drain(..).map(Record::Candle));
                    for id in checkpoints(&control) {
                        let snapshot = Snapshot::Windows {
                            windows: partitions.iter().map(|(p, w)| (*p, w.snapshot())).collect(),
                            marks: marks.values().copied().collect(),
                        };
                        on_snapshot(*cap.time(), id, snapshot);
                    }
                }
                input.for_each(|cap, data| {
                    let Some(cap) = cap.retain_least(0) else {
                        return;
                    };
                    let time = *cap.time();
                    // Records go straight through (no copy into the stash)
                    // once every earlier time is done and none of their own
                    // time waits: their time's controls still come after
                    // them, applied when the time is complete.
                    let direct = records.first().is_none_or(|t| t > time)
                        && controls.first().is_none_or(|t| t >= time)
                        && inputs
                            .iter()
                            .all(|f| f.frontier().iter().all(|t| *t >= time));
                    if direct {
                        let mut session = output.session(&cap);
                        for item in data.drain(..) {
                            fold(item, &mut partitions, &spec, &mut candles, &mut late, |r| {
                                session.give(r)
                            });
                        }
                    } else {
                        records.push(cap, data);
                    }
                });
                let least = inputs
                    .iter()
                    .filter_map(|f| f.frontier().iter().min().copied())
                    .min();
                match (least, hold.as_mut()) {
                    (Some(time), Some(cap)) => cap.downgrade(&time),
                    // The input has ended: close every window still open.
                    (None, Some(cap)) => {
                        if close_at_end {
                            let mut session = output.session(&*cap);
                            for w in partitions.values_mut() {
                                w.advance(i64::MAX, &mut candles);
                            }
                            session.give_iterator(candles.drain(..).map(Record::Candle));
                        }
                        hold = None;
                    }
                    (_, None) => {}
                }
            }
        })
    }
}

fn windows<'a>(
    partitions: &'a mut BTreeMap<u32, Windows>,
    partition: u32,
    spec: &CandleSpec,
) -> &'a mut Windows {
    partitions
        .entry(partition)
        .or_insert_with(|| Windows::new(spec.clone()))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use timely::dataflow::operators::Concat;
    use timely::dataflow::InputHandleVec;

    use super::*;
    use crate::partition::PartitionReader;
    use crate::window::Interval;

    /// Runs `messages` (partition, JSON) through books and candles on one
    /// worker, one timely time per message.
    fn run(messages: &'static [(u32, &'static str)]) -> Vec<Record> {
        timely::execute_directly(move |worker| {
            let records = Rc::new(RefCell::new(Vec::new()));
            let sink = Rc::clone(&records);
            let mut orders = InputHandleVec::new();
            let mut marks: InputHandleVec<Time, Control> = InputHandleVec::new();
            let spec = CandleSpec {
                intervals: vec![Interval(60_000)],
                lateness: 0,
            };
            worker.dataflow::<Time, _, _>(|scope| {
                let control = marks.to_stream(scope);
                let books = orders.to_stream(scope).books(
                    control.clone(),
                    Vec::new(),
                    Box::new(|_, _, _| {}),
                    None,
                );
                let candles = books.trades.candles(
                    control,
                    spec,
                    Restored::default(),
                    Box::new(|_, _, _| {}),
                    true,
                );
                books
                    .records
                    .concat(candles)
                    .sink(Pipeline, "Collect", move |(input, _)| {
                        input.for_each(|_, data| sink.borrow_mut().append(data));
                    });
            });
            let mut readers = [PartitionReader::new(0, 0), PartitionReader::new(1, 0)];
            for (offset, (partition, json)) in messages.iter().enumerate() {
                orders.send(readers[*partition as usize].read(json, offset as u64, 0));
                let time = offset as Time + 1;
                orders.advance_to(time);
                marks.advance_to(time);
                worker.step();
            }
            drop((orders, marks));
            while worker.step() {}
            let records = records.borrow().clone();
            records
        })
    }

    #[test]
    fn a_trade_follows_its_own_partitions_watermark() {
        // Partition 0 races ahead in event time; partition 1's trade at
        // ts 1000 must be judged by partition 1's watermark, not late.
        let records = run(&[
            (
                1,
                r#"{"type":"new","order_id":"s","symbol":"B","side":"sell","price":"1","qty":"2","ts":1000}"#,
            ),
            (
                0,
                r#"{"type":"new","order_id":"a","symbol":"A","side":"sell","price":"1","qty":"2","ts":1000000}"#,
            ),
            (
                1,
                r#"{"type":"new","order_id":"b","symbol":"B","side":"buy","price":"1","qty":"1","ts":1000}"#,
            ),
        ]);
        assert!(
            !records.iter().any(|r| matches!(r, Record::Late(_))),
            "{records:?}"
        );
        let candles: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Candle(c) => Some((c.symbol.as_str(), c.window_start, c.version)),
                _ => None,
            })
            .collect();
        assert_eq!(candles, vec![("B", 0, 1)]);
        assert_eq!(
            records
                .iter()
                .filter(|r| matches!(r, Record::Event(_)))
                .count(),
            3
        );
    }
}
