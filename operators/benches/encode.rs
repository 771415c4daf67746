//! Writing output records as the contract's JSON (`json::write`): the
//! events, trades and bbo of generated orders matched by their books, as
//! the sinks receive them. Reports records per second.
//!
//! `cargo bench -p orderflow-operators --bench encode`

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use operators::book::{BookOutput, OrderBook};
use operators::dataflow::Record;
use operators::gen::{GenSpec, Generator};
use operators::order;

const MESSAGES: u64 = 200_000;

/// The records the books make of `MESSAGES` generated orders, with accounts.
fn records() -> Vec<Record> {
    let mut generator = Generator::new(GenSpec {
        orders: Some(MESSAGES),
        accounts: 1_000,
        ..GenSpec::default()
    });
    let mut books = HashMap::new();
    let mut out = BookOutput::default();
    let mut records = Vec::new();
    let mut line = String::new();
    while generator.next_into(&mut line) {
        let Ok(msg) = order::parse(&line, 0) else {
            continue;
        };
        let book = books
            .entry(msg.symbol.clone())
            .or_insert_with(|| OrderBook::new(msg.symbol.clone()));
        book.apply(&msg, &mut out);
        records.extend(out.events.drain(..).map(Record::Event));
        records.extend(out.trades.drain(..).map(Record::Trade));
        records.extend(out.bbo.drain(..).map(Record::Bbo));
        out.clear();
    }
    records
}

fn encode(c: &mut Criterion) {
    let records = records();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    let mut buffer = Vec::with_capacity(1 << 20);
    group.bench_function("json", |b| {
        b.iter(|| {
            for record in &records {
                buffer.clear();
                operators::json::write(record, &mut buffer);
            }
            buffer.len()
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
