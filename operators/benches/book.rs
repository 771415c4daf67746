//! The order book on exchange-core's benchmark mix: 9% GTC, 3% IOC,
//! 6% cancel, 82% move (replace to a new price), on one symbol with a few
//! thousand resting orders. Reports book operations per second.
//!
//! `cargo bench -p orderflow-operators --bench book`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use operators::book::{BookOutput, OrderBook};
use operators::decimal::Fixed;
use operators::order::{Command, OrderMsg, Side, TimeInForce};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MESSAGES: usize = 1_000_000;
const MID: i64 = 10_000;

fn mix() -> Vec<OrderMsg> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut live: Vec<(u64, Side)> = Vec::new();
    let mut next = 0u64;
    let mut messages = Vec::with_capacity(MESSAGES);
    // Start from a populated book, as exchange-core does.
    let warm = (0..2_000).map(|_| 0u32);
    let roll = warm
        .chain((0..MESSAGES - 2_000).map(|_| rng.random_range(1..=100u32)))
        .collect::<Vec<_>>();
    for r in roll {
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
                    rng.random_range(1..200)
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
            ts: 0,
        });
    }
    messages
}

fn book(c: &mut Criterion) {
    let messages = mix();
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.sample_size(10);
    group.bench_function("exchange_core_mix", |b| {
        b.iter_batched(
            || (OrderBook::new("BENCH".into()), BookOutput::default()),
            |(mut book, mut out)| {
                for msg in &messages {
                    book.apply(msg, &mut out);
                    out.clear();
                }
                book
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, book);
criterion_main!(benches);
