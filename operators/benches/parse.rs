//! Reading order messages: the JSON stage (every field of a message as raw
//! JSON, borrowed from the line) with serde_json, sonic-rs and simd-json,
//! and the whole of `order::parse` (JSON stage plus validation) as it is.
//!
//! On generated orders (2 cores, AMD EPYC, portable build without
//! `-C target-cpu=native`): serde_json 4.3M messages/s, sonic-rs 3.0M,
//! simd-json 2.5M, `order::parse` 3.5M. Orders are short objects; serde_json
//! borrowing `RawValue`s stays.
//!
//! `cargo bench -p orderflow-operators --bench parse`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use operators::gen::{GenSpec, Generator};
use serde::Deserialize;

const MESSAGES: usize = 200_000;

fn lines() -> Vec<String> {
    let mut generator = Generator::new(GenSpec {
        orders: Some(MESSAGES as u64),
        ..GenSpec::default()
    });
    let mut line = String::new();
    let mut lines = Vec::with_capacity(MESSAGES);
    while generator.next_into(&mut line) {
        lines.push(line.clone());
    }
    lines
}

/// The fields `order::parse` reads, each as raw JSON.
macro_rules! fields {
    ($name:ident, $raw:ty) => {
        #[allow(dead_code)]
        #[derive(Deserialize)]
        struct $name<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: Option<$raw>,
            #[serde(borrow, default)]
            order_id: Option<$raw>,
            #[serde(borrow, default)]
            symbol: Option<$raw>,
            #[serde(borrow, default)]
            side: Option<$raw>,
            #[serde(borrow, default)]
            order_type: Option<$raw>,
            #[serde(borrow, default)]
            price: Option<$raw>,
            #[serde(borrow, default)]
            qty: Option<$raw>,
            #[serde(borrow, default)]
            tif: Option<$raw>,
            #[serde(borrow, default)]
            account: Option<$raw>,
            #[serde(borrow, default)]
            ts: Option<$raw>,
        }
    };
}

fields!(SerdeJson, &'a serde_json::value::RawValue);
fields!(Sonic, sonic_rs::LazyValue<'a>);

fn parse(c: &mut Criterion) {
    let lines = lines();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(10);
    group.bench_function("serde_json_fields", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| serde_json::from_str::<SerdeJson>(l).is_ok())
                .count()
        })
    });
    group.bench_function("sonic_rs_fields", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| sonic_rs::from_str::<Sonic>(l).is_ok())
                .count()
        })
    });
    // simd-json parses in place: each line is copied into a buffer first.
    group.bench_function("simd_json_fields", |b| {
        let mut buffer = Vec::new();
        b.iter(|| {
            lines
                .iter()
                .filter(|l| {
                    buffer.clear();
                    buffer.extend_from_slice(l.as_bytes());
                    simd_json::to_borrowed_value(&mut buffer).is_ok()
                })
                .count()
        })
    });
    group.bench_function("order_parse", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| operators::order::parse(l, 0).is_ok())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
