//! The order book on exchange-core's benchmark mix: 9% GTC, 3% IOC,
//! 6% cancel, 82% move (replace to a new price), on one symbol with a few
//! thousand resting orders, and again with a million resting orders spread
//! over many levels. Reports book operations per second. Messages are
//! applied as the books operator applies them: each with the cache lines
//! of the ones after it fetched ahead.
//!
//! `cargo bench -p orderflow-operators --bench book`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use operators::book::{ahead, BookOutput, OrderBook};
use operators::decimal::Fixed;
use operators::order::{Command, OrderMsg, Side, TimeInForce};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MESSAGES: usize = 1_000_000;
const MID: i64 = 100_000;

/// The messages that place `resting` orders (up to `spread` ticks from the
/// mid), and the mix that follows, which is what is timed.
fn mix(resting: usize, spread: i64) -> (Vec<OrderMsg>, Vec<OrderMsg>) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut live: Vec<(u64, Side)> = Vec::new();
    let mut next = 0u64;
    let mut messages = Vec::with_capacity(resting + MESSAGES);
    // Start from a populated book, as exchange-core does.
    let warm = (0..resting).map(|_| 0u32);
    let roll = warm
        .chain((0..MESSAGES).map(|_| rng.random_range(1..=100u32)))
        .collect::<Vec<_>>();
    for (i, r) in roll.into_iter().enumerate() {
        let spread = if i < resting { spread } else { 200 };
        let (id, command) = match r {
            _ if r <= 12 || live.is_empty() => {
                next += 1;
                let side = if rng.random_bool(0.5) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                // GTC rests away from the mid; IOC crosses it.
                let ioc = (10..=12).contains(&r);
                let away = if ioc {
                    -rng.random_range(0..5)
                } else {
                    rng.random_range(1..spread)
                };
                let price = if side == Side::Buy {
                    MID - away
                } else {
                    MID + away
                };
                if !ioc {
                    live.push((next, side));
                }
                let tif = if ioc {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Gtc
                };
                (
                    next,
                    Command::New {
                        side,
                        price: Some(Fixed::units(price)),
                        qty: Fixed::units(rng.random_range(1..100)),
                        tif,
                    },
                )
            }
            13..=18 => {
                let (id, _) = live.swap_remove(rng.random_range(0..live.len()));
                (id, Command::Cancel)
            }
            _ => {
                let (id, side) = live[rng.random_range(0..live.len())];
                let away = rng.random_range(1..200);
                let price = if side == Side::Buy {
                    MID - away
                } else {
                    MID + away
                };
                (
                    id,
                    Command::Replace {
                        price: Some(Fixed::units(price)),
                        qty: None,
                    },
                )
            }
        };
        messages.push(OrderMsg {
            symbol: "BENCH".into(),
            order_id: format!("o{id}").into(),
            command,
            account: None,
            ts: 0,
        });
    }
    let timed = messages.split_off(resting);
    (messages, timed)
}

/// Applies `messages` as the books operator does.
fn apply(book: &mut OrderBook, messages: &[OrderMsg], out: &mut BookOutput) {
    for (at, msg) in messages.iter().enumerate() {
        for (later, fetch) in ahead(messages, at) {
            book.prefetch(later, fetch);
        }
        book.apply(msg, out);
        out.clear();
    }
}

fn book(c: &mut Criterion) {
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    for (name, resting, spread) in [
        ("exchange_core_mix", 2_000, 200),
        ("exchange_core_mix_1m_resting", 1_000_000, 20_000),
    ] {
        let (warm, timed) = mix(resting, spread);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut book = OrderBook::new("BENCH".into());
                    let mut out = BookOutput::default();
                    apply(&mut book, &warm, &mut out);
                    (book, out)
                },
                |(mut book, mut out)| {
                    apply(&mut book, &timed, &mut out);
                    book
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, book);
criterion_main!(benches);
