//! `/metrics`: the run's own counters, read at scrape time (the workers
//! keep counting as they always do; nothing is added to their path).

use std::fmt;
use std::sync::atomic::Ordering;

use operators::order::Reason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The latency histogram has no labels and no exemplars.
type NoLabels = [(&'static str, &'static str); 0];

use super::Watch;
use crate::progress::Counters;
use crate::sink::Health;

/// Latency bucket bounds, in seconds: 100 µs to 10 s.
const LATENCY_BOUNDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// The Prometheus text of the run now.
pub fn render(watch: &std::sync::Arc<Watch>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(std::sync::Arc::clone(watch))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing into a String cannot fail");
    text
}

/// Prometheus's collectors must be `Debug`; the run's state is not.
struct Scrape(std::sync::Arc<Watch>);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One sample per sink, labelled with its index and kind.
fn per_sink<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    watch: &Watch,
    name: &str,
    help: &str,
    kind: MetricType,
    sample: impl Fn(&Health) -> M,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (index, sink) in watch.sinks.iter().enumerate() {
        let index = index.to_string();
        let labels = [("sink", index.as_str()), ("kind", sink.kind)];
        sample(sink.sink.health()).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Watermark lag, idleness and (Kafka) consumer lag of each source
/// partition, labelled with its id.
fn partitions(encoder: &mut DescriptorEncoder, watch: &Watch) -> fmt::Result {
    let states = match watch.partitions.lock() {
        Ok(states) => states.clone(),
        Err(_) => return Ok(()),
    };
    let now = crate::source::now_ms();
    let ids: Vec<String> = states.keys().map(u32::to_string).collect();
    let labelled = states.values().zip(&ids);
    let mut family = encoder.encode_descriptor(
        "orderflow_watermark_lag_seconds",
        "Wall-clock time minus each source partition's watermark.",
        None,
        MetricType::Gauge,
    )?;
    for (state, id) in labelled.clone() {
        if state.watermark != i64::MIN && state.watermark != i64::MAX {
            let lag = (now - state.watermark) as f64 / 1e3;
            ConstGauge::new(lag).encode(family.encode_family(&[("partition", id.as_str())])?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "orderflow_partition_idle",
        "1 while a source partition has had no message for --idle-timeout (or has ended).",
        None,
        MetricType::Gauge,
    )?;
    for (state, id) in labelled.clone() {
        ConstGauge::new(i64::from(state.idle))
            .encode(family.encode_family(&[("partition", id.as_str())])?)?;
    }
    if states.values().any(|s| s.lag.is_some()) {
        let mut family = encoder.encode_descriptor(
            "orderflow_kafka_consumer_lag",
            "Messages in each Kafka partition beyond those read (as of the consumer's last fetch).",
            None,
            MetricType::Gauge,
        )?;
        for (state, id) in labelled {
            if let Some(lag) = state.lag {
                ConstGauge::new(lag)
                    .encode(family.encode_family(&[("partition", id.as_str())])?)?;
            }
        }
    }
    Ok(())
}

/// The error each failing sink is retrying or stopped with, as a label: an
/// info metric, since Prometheus samples carry no text.
fn sink_errors(encoder: &mut DescriptorEncoder, watch: &Watch) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "orderflow_sink_error",
        "1 for each sink with an error (being retried, or the one that stopped it), named in the label.",
        None,
        MetricType::Gauge,
    )?;
    for (index, sink) in watch.sinks.iter().enumerate() {
        let Some(error) = sink.sink.health().error() else {
            continue;
        };
        // A label value on one line, without the quotes and backslashes
        // the text format would have to escape.
        let error: String = error
            .chars()
            .map(|c| {
                if matches!(c, '"' | '\\' | '\n') {
                    ' '
                } else {
                    c
                }
            })
            .take(300)
            .collect();
        let index = index.to_string();
        let labels = [
            ("sink", index.as_str()),
            ("kind", sink.kind),
            ("error", &error),
        ];
        ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let watch = &self.0;
        let c = &watch.counters;
        let get = Counters::get;
        let e = &mut encoder;
        counter(
            e,
            "orderflow_orders",
            "Messages read and accounted for (one event each).",
            get(&c.events),
        )?;
        counter(e, "orderflow_trades", "Trades emitted.", get(&c.trades))?;
        counter(
            e,
            "orderflow_bbo_changes",
            "Best bid/offer changes emitted.",
            get(&c.bbo),
        )?;
        counter(
            e,
            "orderflow_candles",
            "Candle rows emitted (first emissions and late updates).",
            get(&c.candles),
        )?;
        counter(
            e,
            "orderflow_late_trades",
            "Trades after their window's allowed lateness.",
            get(&c.late),
        )?;
        {
            let mut family = e.encode_descriptor(
                "orderflow_view_rows",
                "Rows of the differential views emitted, by view.",
                None,
                MetricType::Counter,
            )?;
            for (view, rows) in ["positions", "exposure", "depth"].iter().zip(&c.views) {
                let metric = ConstCounter::new(get(rows));
                metric.encode(family.encode_family(&[("view", *view)])?)?;
            }
        }
        counter(
            e,
            "orderflow_input_bytes",
            "Bytes read from a file source.",
            get(&c.input_bytes),
        )?;
        {
            let mut family = e.encode_descriptor(
                "orderflow_rejects",
                "Messages rejected, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (kind, name) in Reason::KINDS[..Reason::REJECTIONS].iter().enumerate() {
                let metric = ConstCounter::new(get(&c.rejects[kind]));
                metric.encode(family.encode_family(&[("reason", *name)])?)?;
            }
        }
        partitions(e, watch)?;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        per_sink(
            e,
            watch,
            "orderflow_sink_rows",
            "Rows each sink's destination has taken.",
            MetricType::Counter,
            |h| ConstCounter::new(load(&h.rows)),
        )?;
        per_sink(
            e,
            watch,
            "orderflow_sink_retries",
            "Writes each sink tried again after a transient error.",
            MetricType::Counter,
            |h| ConstCounter::new(load(&h.retries)),
        )?;
        per_sink(
            e,
            watch,
            "orderflow_sink_queued",
            "Chunks, batches or (Kafka) records waiting for each sink's writers.",
            MetricType::Gauge,
            |h| ConstGauge::new(load(&h.queued) as i64),
        )?;
        per_sink(
            e,
            watch,
            "orderflow_sink_up",
            "1 while a sink writes, 0 while it retries or has failed.",
            MetricType::Gauge,
            |h| ConstGauge::new(i64::from(h.error().is_none())),
        )?;
        sink_errors(e, watch)?;
        if let Some(checkpointer) = &watch.checkpointer {
            let stats = checkpointer.stats();
            counter(
                e,
                "orderflow_checkpoints",
                "Checkpoints completed.",
                stats.completed,
            )?;
            if let Some(at) = stats.last_at {
                gauge(
                    e,
                    "orderflow_checkpoint_age_seconds",
                    "Time since the last checkpoint completed.",
                    at.elapsed().as_secs_f64(),
                )?;
                gauge(
                    e,
                    "orderflow_checkpoint_duration_seconds",
                    "How long the last checkpoint took.",
                    stats.last_duration.as_secs_f64(),
                )?;
            }
        }
        let (sum, count, buckets) = watch.latency.buckets(&LATENCY_BOUNDS);
        if count > 0 {
            let mut metric = e.encode_descriptor(
                "orderflow_latency_seconds",
                "From a source handing messages to the dataflow to their records reaching the sink writers.",
                None,
                MetricType::Histogram,
            )?;
            metric.encode_histogram::<NoLabels>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}
