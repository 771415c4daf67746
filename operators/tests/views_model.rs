//! The differential views against a simple model: on random order streams,
//! run through the books and the views on 1, 2 and 4 workers with several
//! batch sizes, the latest row of every key equals what the final trades
//! and the final books say, and every positions and depth row is exact at
//! its own `seq`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use operators::book::{BookOutput, OrderBook};
use operators::dataflow::{BookRecord, Books, Control, Record, Time};
use operators::order::Side;
use operators::output::{Depth, Exposure, Position, Trade};
use operators::partition::PartitionReader;
use operators::views::{ViewSpec, Views};
use proptest::prelude::*;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Inspect};
use timely::dataflow::InputHandleVec;

const DEPTH: usize = 3;

#[derive(Default)]
struct Rows {
    trades: Vec<Trade>,
    positions: Vec<Position>,
    exposure: Vec<Exposure>,
    depth: Vec<Depth>,
}

/// Runs `lines` (one partition) through books and views, the views taking
/// in the books' changes `every` so long.
fn run(lines: Vec<String>, workers: usize, batch: usize, every: Duration) -> Rows {
    let rows = Arc::new(Mutex::new(Rows::default()));
    let shared = Arc::clone(&rows);
    timely::execute(timely::Config::process(workers), move |worker| {
        let rows = Arc::clone(&shared);
        let mut orders = InputHandleVec::new();
        let mut control: InputHandleVec<Time, Control> = InputHandleVec::new();
        worker.dataflow::<Time, _, _>(|scope| {
            let control = control.to_stream(scope);
            let spec = ViewSpec {
                depth: DEPTH,
                every,
            };
            let books = orders.to_stream(scope).books(
                control,
                Vec::new(),
                Box::new(|_, _, _| {}),
                Some(spec),
            );
            let trades = books.trades.flat_map(|record| match record {
                BookRecord::Trade { trade, .. } => Some(Record::Trade(trade)),
                BookRecord::Progress { .. } => None,
            });
            trades
                .concat(books.changes.views(spec))
                .inspect(move |record| {
                    let mut rows = rows.lock().unwrap();
                    match record {
                        Record::Trade(trade) => rows.trades.push(trade.clone()),
                        Record::Position(p) => rows.positions.push(p.clone()),
                        Record::Exposure(e) => rows.exposure.push(e.clone()),
                        Record::Depth(d) => rows.depth.push(d.clone()),
                        _ => {}
                    }
                });
        });
        let mut reader = PartitionReader::new(0, 0);
        for (i, chunk) in lines.chunks(batch).enumerate() {
            if worker.index() == 0 {
                for (j, line) in chunk.iter().enumerate() {
                    orders.send(reader.read(line, (i * batch + j) as u64, 0));
                }
            }
            orders.advance_to(i as Time + 1);
            control.advance_to(i as Time + 1);
            worker.step();
        }
        drop((orders, control));
        while worker.step() {}
    })
    .unwrap();
    Arc::try_unwrap(rows)
        .unwrap_or_else(|_| panic!("workers done"))
        .into_inner()
        .unwrap()
}

/// Positions from the trades up to each symbol's `until` seq (all if absent).
fn model_positions(trades: &[Trade]) -> BTreeMap<(String, String), Position> {
    let mut last: HashMap<&str, &Trade> = HashMap::new();
    for t in trades {
        let entry = last.entry(&t.symbol).or_insert(t);
        if t.seq > entry.seq {
            *entry = t;
        }
    }
    let mut positions: BTreeMap<(String, String), Position> = BTreeMap::new();
    for t in trades {
        let (buyer, seller) = match t.taker_side {
            Side::Buy => (&t.taker_account, &t.maker_account),
            Side::Sell => (&t.maker_account, &t.taker_account),
        };
        let notional = i128::from(t.price.0) * i128::from(t.qty.0);
        let mut leg = |account: &Option<compact_str::CompactString>, bought: bool, count: bool| {
            let Some(account) = account else { return };
            let latest = last[t.symbol.as_str()];
            let p = positions
                .entry((account.to_string(), t.symbol.to_string()))
                .or_insert_with(|| Position {
                    account: account.clone(),
                    symbol: t.symbol.clone(),
                    bought: operators::decimal::Wide(0),
                    sold: operators::decimal::Wide(0),
                    buy_notional: 0,
                    sell_notional: 0,
                    trades: 0,
                    last_price: latest.price,
                    seq: latest.seq,
                });
            if bought {
                p.bought.0 += i128::from(t.qty.0);
                p.buy_notional += notional;
            } else {
                p.sold.0 += i128::from(t.qty.0);
                p.sell_notional += notional;
            }
            p.trades += u64::from(count);
        };
        leg(buyer, true, true);
        // A self-trade is one trade for its account.
        leg(seller, false, buyer.is_none() || buyer != seller);
    }
    positions
}

fn model_exposure(positions: &BTreeMap<(String, String), Position>) -> BTreeMap<String, Exposure> {
    let mut exposure: BTreeMap<String, Exposure> = BTreeMap::new();
    for ((account, _), p) in positions {
        let e = exposure.entry(account.clone()).or_insert_with(|| Exposure {
            account: p.account.clone(),
            ..Exposure::default()
        });
        e.version += p.seq;
        if p.position().0 != 0 {
            let x = p.exposure().0;
            e.symbols += 1;
            e.gross.0 += x.abs();
            e.net.0 += x;
            if x > 0 {
                e.long.0 += x;
            } else {
                e.short.0 += x;
            }
        }
    }
    exposure
}

/// A level of depth: (side, level, price, qty, orders).
type Level = (Side, u64, i64, i64, u64);

/// Each symbol's top levels per side after each of its messages: what
/// depth must say at that `seq`.
fn model_depth(lines: &[String]) -> HashMap<(String, u64), Vec<Level>> {
    let mut books: HashMap<String, OrderBook> = HashMap::new();
    let mut reader = PartitionReader::new(0, 0);
    let mut at = HashMap::new();
    for (offset, line) in lines.iter().enumerate() {
        let seq = reader.read(line, offset as u64, 0);
        let Some(symbol) = seq.symbol().cloned() else {
            continue;
        };
        let book = books
            .entry(symbol.to_string())
            .or_insert_with(|| OrderBook::new(symbol.clone()));
        let mut out = BookOutput::default();
        match &seq.msg {
            Ok(msg) => book.apply(msg, &mut out),
            Err(rejected) => book.reject(rejected, &mut out),
        }
        let mut levels = Vec::new();
        for side in [Side::Buy, Side::Sell] {
            let mut side_levels: Vec<_> = book.levels().filter(|l| l.side == side).collect();
            side_levels.sort_by_key(|l| if side == Side::Buy { -l.price } else { l.price });
            for (i, l) in side_levels.iter().take(DEPTH).enumerate() {
                levels.push((side, i as u64 + 1, l.price, l.qty, l.orders as u64));
            }
        }
        at.insert((symbol.to_string(), book.msg_seq()), levels);
    }
    at
}

fn check(
    lines: Vec<String>,
    workers: usize,
    batch: usize,
    every: Duration,
) -> Result<(), TestCaseError> {
    let rows = run(lines.clone(), workers, batch, every);
    let positions = model_positions(&rows.trades);
    // The latest row per key is the final state.
    let mut latest: BTreeMap<(String, String), &Position> = BTreeMap::new();
    for p in &rows.positions {
        let key = (p.account.to_string(), p.symbol.to_string());
        if latest.get(&key).is_none_or(|q| q.seq < p.seq) {
            latest.insert(key, p);
        }
    }
    let latest: BTreeMap<_, Position> = latest.into_iter().map(|(k, p)| (k, p.clone())).collect();
    prop_assert_eq!(
        &latest,
        &positions,
        "positions, {} workers, batch {}",
        workers,
        batch
    );
    // Every positions row is the model of the trades up to its seq.
    for p in &rows.positions {
        let until: Vec<Trade> = rows
            .trades
            .iter()
            .filter(|t| t.symbol != p.symbol || t.seq <= p.seq)
            .cloned()
            .collect();
        let model = &model_positions(&until)[&(p.account.to_string(), p.symbol.to_string())];
        prop_assert_eq!(p, model);
    }
    let mut exposure: BTreeMap<String, Exposure> = BTreeMap::new();
    for e in &rows.exposure {
        if exposure
            .get(e.account.as_str())
            .is_none_or(|f| f.version < e.version)
        {
            exposure.insert(e.account.to_string(), e.clone());
        }
    }
    prop_assert_eq!(exposure, model_exposure(&positions), "exposure");
    check_depth(&rows.depth, &model_depth(&lines))
}

/// Every depth row in `depth` is exact at its own seq, and the latest row
/// of each key (a later one winning a tie, as in ClickHouse) is the final
/// books.
fn check_depth<'a>(
    depth: impl IntoIterator<Item = &'a Depth>,
    model: &HashMap<(String, u64), Vec<Level>>,
) -> Result<(), TestCaseError> {
    let mut final_depth: BTreeMap<(String, Side, u64), &Depth> = BTreeMap::new();
    for d in depth {
        // Exact at its own seq.
        let levels = &model[&(d.symbol.to_string(), d.seq)];
        let expected = levels
            .iter()
            .find(|(side, level, ..)| *side == d.side && *level == d.level);
        match expected {
            Some((_, _, price, qty, orders)) => {
                prop_assert_eq!(
                    (d.price.map(|p| p.0), d.qty.0, d.orders),
                    (Some(*price), *qty, *orders),
                    "{:?}",
                    d
                )
            }
            None => prop_assert_eq!((d.price, d.qty.0, d.orders), (None, 0, 0), "{:?}", d),
        }
        let key = (d.symbol.to_string(), d.side, d.level);
        if final_depth.get(&key).is_none_or(|e| e.seq <= d.seq) {
            final_depth.insert(key, d);
        }
    }
    // The final rows are the final books.
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for (symbol, seq) in model.keys() {
        let s = last_seq.entry(symbol).or_default();
        *s = (*s).max(*seq);
    }
    for (symbol, seq) in &last_seq {
        for (side, level, price, qty, orders) in &model[&(symbol.to_string(), *seq)] {
            let row = final_depth.get(&(symbol.to_string(), *side, *level));
            prop_assert!(
                row.is_some(),
                "no depth row for {} {:?} {}",
                symbol,
                side,
                level
            );
            let row = row.unwrap();
            prop_assert_eq!(
                (row.price.map(|p| p.0), row.qty.0, row.orders),
                (Some(*price), *qty, *orders)
            );
        }
    }
    for ((symbol, side, level), row) in &final_depth {
        let levels = &model[&(symbol.clone(), last_seq[symbol.as_str()])];
        if !levels.iter().any(|(s, l, ..)| s == side && l == level) {
            prop_assert_eq!(row.price, None, "a level gone stays gone");
        }
    }
    Ok(())
}

fn line() -> impl Strategy<Value = String> {
    (0..10u8, 0..2u8, 0..12u8, any::<bool>(), 98..=102i64, 1..=5i64, 0..4u8, 0..4u8)
        .prop_map(|(kind, symbol, id, buy, price, qty, tif, account)| {
            let symbol = ["X", "Y"][symbol as usize];
            let account = match account {
                3 => String::new(),
                a => format!(r#","account":"A{a}""#),
            };
            let side = if buy { "buy" } else { "sell" };
            let tif = ["gtc", "ioc", "fok", "gtc"][tif as usize];
            match kind {
                0..=5 => format!(
                    r#"{{"type":"new","order_id":"o{id}","symbol":"{symbol}","side":"{side}","price":"{price}","qty":"{qty}","tif":"{tif}"{account}}}"#
                ),
                6 | 7 => format!(r#"{{"type":"cancel","order_id":"o{id}","symbol":"{symbol}"}}"#),
                _ => format!(
                    r#"{{"type":"replace","order_id":"o{id}","symbol":"{symbol}","price":"{price}","qty":"{qty}"}}"#
                ),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn views_equal_the_model_of_final_trades_and_books(
        lines in proptest::collection::vec(line(), 1..120),
    ) {
        // Every batch; every so often (drains fall between batches as the
        // clock says); only at the end.
        let (each, often, end) = (Duration::ZERO, Duration::from_micros(50), Duration::from_secs(3600));
        for (workers, batch, every) in [
            (1, 1, each),
            (1, 7, often),
            (1, 1, end),
            (2, 3, each),
            (2, 1000, each),
            (4, 5, often),
        ] {
            check(lines.clone(), workers, batch, every)?;
        }
    }

    /// A killed run wrote the rows of a prefix of the input at every batch;
    /// its restart, which cuts its turns elsewhere, must still leave the
    /// final books as the latest rows: a level that came and went between
    /// two of its turns is rewritten, not left at the killed run's state.
    #[test]
    fn depth_of_a_killed_run_and_its_restart_ends_at_the_final_books(
        lines in proptest::collection::vec(line(), 1..120),
        cut in 0usize..120,
    ) {
        let killed = run(lines[..cut.min(lines.len())].to_vec(), 1, 1, Duration::ZERO);
        for (workers, batch, every) in [(1, 1000, Duration::from_secs(3600)), (2, 7, Duration::from_micros(50))] {
            let restarted = run(lines.clone(), workers, batch, every);
            check_depth(killed.depth.iter().chain(&restarted.depth), &model_depth(&lines))?;
        }
    }
}
