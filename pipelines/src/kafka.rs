//! Kafka plumbing shared by the source, the sink and `orderflow gen --to`:
//! addresses, client settings, topic creation and a producer that never
//! drops a record silently.
//!
//! Only standard client behaviour is used (librdkafka's own retries,
//! idempotence and flow control), so the same code runs on Apache Kafka,
//! Redpanda and the test broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message};

use crate::sink::Health;

/// How long a metadata or offset request may take before we give up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long start-up waits for a broker to answer before saying why it
/// did not: a wrong port or protocol must not look like a slow cluster.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// `kafka://HOST:PORT[,HOST:PORT…][/TOPIC][?key=value&…]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaAddress {
    pub brokers: String,
    pub topic: Option<String>,
    /// Settings of the sink itself (`prefix`, `partitions`), not librdkafka's.
    pub params: Vec<(String, String)>,
}

impl KafkaAddress {
    pub fn parse(url: &str) -> anyhow::Result<KafkaAddress> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| anyhow!("`{url}` is not a kafka://HOST:PORT address"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = match rest.split_once('/') {
            Some((brokers, topic)) => (brokers, Some(topic)),
            None => (rest, None),
        };
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            bail!("`{url}`: brokers must be HOST:PORT, comma-separated");
        }
        let topic = match topic {
            Some("") | None => None,
            Some(t) if t.contains('/') => bail!("`{url}`: a topic name has no `/`"),
            Some(t) => Some(t.to_string()),
        };
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => bail!("`{url}`: expected key=value after `?`, not `{p}`"),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(KafkaAddress {
            brokers: brokers.to_string(),
            topic,
            params,
        })
    }

    pub fn topic(&self) -> anyhow::Result<&str> {
        self.topic.as_deref().ok_or_else(|| {
            anyhow!(
                "kafka://{} names no topic (kafka://HOST:PORT/TOPIC)",
                self.brokers
            )
        })
    }

    /// A client of these brokers: `defaults` first, the user's
    /// `--kafka-option`s over them.
    pub fn config(&self, defaults: &[(&str, &str)], options: &[(String, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in options {
            config.set(key, value);
        }
        config
    }

    /// A consumer of these brokers (see [`KafkaAddress::config`]).
    pub fn client(
        &self,
        defaults: &[(&str, &str)],
        options: &[(String, String)],
    ) -> anyhow::Result<Client> {
        let config = self.config(defaults, options);
        let connection = Connection {
            brokers: self.brokers.clone(),
            protocol: config
                .get("security.protocol")
                .unwrap_or("plaintext")
                .to_ascii_uppercase(),
            failure: Mutex::new(None),
            logged: Mutex::default(),
            ends: Mutex::default(),
        };
        config
            .create_with_context(connection)
            .context("creating a Kafka client")
    }
}

/// `--kafka-option key=value`, checked for shape at the edge.
pub fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "`{text}`: expected a librdkafka setting as key=value"
        )),
    }
}

/// A consumer whose context remembers why it could not connect.
pub type Client = BaseConsumer<Connection>;

/// What a client knows of its brokers: where they are, which protocol it
/// speaks, and the last connection failure librdkafka logged (librdkafka
/// retries for ever; start-up turns that into one clear message).
pub struct Connection {
    brokers: String,
    protocol: String,
    failure: Mutex<Option<String>>,
    /// The last error logged, so a down broker's repeats are logged once.
    logged: Mutex<String>,
    /// Each partition's last stable offset (its end, for a read-committed
    /// consumer) as the statistics last reported it, when enabled.
    ends: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for Connection {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            self.keep(message);
        }
        DefaultClientContext.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("Kafka: {error}: {reason}");
        if let Ok(mut logged) = self.logged.lock() {
            if *logged != text {
                tracing::error!("{text}");
                *logged = text;
            }
        }
        self.failed(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        if let Ok(mut ends) = self.ends.lock() {
            for topic in statistics.topics.values() {
                for (id, partition) in &topic.partitions {
                    // librdkafka's internal partition -1 has no offsets.
                    if *id >= 0 && partition.ls_offset >= 0 {
                        ends.insert(*id, partition.ls_offset);
                    }
                }
            }
        }
    }
}

impl ConsumerContext for Connection {}

impl Connection {
    /// Partition `id`'s end as of the consumer's last statistics.
    pub fn end(&self, id: i32) -> Option<i64> {
        self.ends.lock().ok()?.get(&id).copied()
    }

    /// Keeps the failure that says why: "all brokers down" follows it.
    fn failed(&self, error: &KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            self.keep(reason);
        }
    }

    fn keep(&self, failure: &str) {
        if let Ok(mut last) = self.failure.lock() {
            *last = Some(failure.to_string());
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok()?.clone()
    }

    /// Why the brokers did not answer, if the last failure says it at
    /// once: credentials or TLS refused, or librdkafka's own hint of a
    /// listener for another protocol.
    fn refused(&self) -> Option<anyhow::Error> {
        let failure = self.failure()?;
        let (brokers, protocol) = (&self.brokers, &self.protocol);
        let listener = format!(
            "is this the port of a broker listener for security.protocol={protocol}? \
             (each listener speaks one protocol)"
        );
        if failure.contains("SASL") || failure.to_lowercase().contains("authenticat") {
            Some(anyhow!(
                "Kafka at {brokers} refused the SASL handshake ({failure}): check \
                 sasl.mechanism, sasl.username and sasl.password; and {listener}"
            ))
        } else if failure.contains("SSL") {
            Some(anyhow!(
                "TLS with Kafka at {brokers} failed ({failure}): {listener}"
            ))
        } else if failure.contains("security.protocol") {
            Some(anyhow!(
                "Kafka at {brokers} hung up ({failure}): {listener}"
            ))
        } else {
            None
        }
    }

    /// Start-up gave up waiting: say what was last heard.
    fn unreachable(&self, error: KafkaError) -> anyhow::Error {
        let heard = self.failure().unwrap_or_else(|| error.to_string());
        anyhow!(
            "no Kafka broker answered at {} within {} s ({heard}): is the broker running, \
             and is this the port of its listener for security.protocol={}?",
            self.brokers,
            STARTUP_TIMEOUT.as_secs(),
            self.protocol
        )
    }
}

/// The partition ids of `topic`, sorted; `None` if it does not exist.
/// Waits at most [`STARTUP_TIMEOUT`] for the brokers, and fails at once
/// when they refuse the client's credentials or protocol.
pub fn partitions(client: &Client, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
    let started = Instant::now();
    let metadata = loop {
        match client.fetch_metadata(Some(topic), Duration::from_secs(1)) {
            Ok(metadata) => break metadata,
            Err(error) => {
                // Logs and errors wait in the client's queue: serve them
                // (a bounded drain: a down broker reports without end).
                for event in std::iter::from_fn(|| client.poll(Duration::ZERO)).take(1000) {
                    if let (Err(e), None) = (event, client.context().failure()) {
                        client.context().failed(&e, &e.to_string());
                    }
                }
                if let Some(refused) = client.context().refused() {
                    return Err(refused);
                }
                if started.elapsed() >= STARTUP_TIMEOUT {
                    return Err(client.context().unreachable(error));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty());
    Ok(found.map(|found| {
        let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        ids
    }))
}

/// The partition ids of `topic`, which must exist.
pub fn existing_partitions(client: &Client, topic: &str) -> anyhow::Result<Vec<i32>> {
    partitions(client, topic)?.ok_or_else(|| anyhow!("topic {topic} does not exist"))
}

/// Each partition of `topics` with its end offset of the moment, as
/// (topic, partition, offset).
pub fn ends(
    address: &KafkaAddress,
    options: &[(String, String)],
    topics: &[String],
) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let consumer = address.client(&[], options)?;
    let mut ends = Vec::new();
    for topic in topics {
        for p in existing_partitions(&consumer, topic)? {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .with_context(|| format!("reading the end offset of {topic} partition {p}"))?;
            ends.push((topic.clone(), p, high));
        }
    }
    Ok(ends)
}

/// Creates `topic` with `partitions` partitions unless it exists; returns
/// its partition count. The replication factor is the broker's default.
pub fn ensure_topic(
    address: &KafkaAddress,
    options: &[(String, String)],
    topic: &str,
    count: u32,
) -> anyhow::Result<usize> {
    let consumer = address.client(&[], options)?;
    if let Some(existing) = partitions(&consumer, topic)? {
        return Ok(existing.len());
    }
    let admin: AdminClient<DefaultClientContext> = address
        .config(&[], options)
        .create()
        .context("creating a Kafka admin client")?;
    let count = i32::try_from(count).context("too many partitions")?;
    let new = NewTopic::new(topic, count, TopicReplication::Fixed(-1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new()))
        .with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    // Creation is asynchronous on the broker: wait until it serves metadata.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match partitions(&consumer, topic)? {
            Some(ids) => return Ok(ids.len()),
            None if Instant::now() > deadline => {
                bail!("topic {topic} was created but the brokers do not serve it")
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Parks the first delivery failure, so that the next send or the final
/// flush reports it: a record is either acknowledged or the run fails. Keeps
/// each partition's end as acknowledgements show it: a record sent later
/// lands at or after it.
#[derive(Default)]
pub struct Deliveries {
    health: Health,
    failure: Mutex<Option<String>>,
    ends: Mutex<HashMap<(String, i32), i64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(message) = result {
            self.health.wrote(1);
            if let Ok(mut ends) = self.ends.lock() {
                let end = ends
                    .entry((message.topic().to_string(), message.partition()))
                    .or_default();
                *end = (*end).max(message.offset() + 1);
            }
        }
        if let Err((error, message)) = result {
            let text = format!(
                "delivering to {} partition {}: {error}",
                message.topic(),
                message.partition()
            );
            self.health.failed(&anyhow!("{text}"));
            if let Ok(mut failure) = self.failure.lock() {
                failure.get_or_insert(text);
            }
        }
    }
}

/// An idempotent producer with a bounded queue: when the queue is full,
/// `send` waits for deliveries instead of growing memory.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ThreadedProducer<Deliveries>>,
}

impl Producer {
    pub fn create(
        address: &KafkaAddress,
        options: &[(String, String)],
    ) -> anyhow::Result<Producer> {
        let producer = address
            .config(
                &[
                    ("enable.idempotence", "true"),
                    ("acks", "all"),
                    ("compression.type", "lz4"),
                    ("linger.ms", "20"),
                    // Bounded in flight: at most this much waits in the client.
                    ("queue.buffering.max.messages", "200000"),
                    ("queue.buffering.max.kbytes", "65536"),
                ],
                options,
            )
            .create_with_context(Deliveries::default())
            .context("creating a Kafka producer")?;
        Ok(Producer {
            inner: Arc::new(producer),
        })
    }

    /// Records acknowledged, and the first delivery failure.
    pub fn health(&self) -> &Health {
        &self.inner.context().health
    }

    /// Queues one record; `partition` `None` lets the key choose.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&str>,
        timestamp: Option<i64>,
        headers: Option<OwnedHeaders>,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        self.check()?;
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(payload);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Backpressure: wait for the broker to take some.
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                    self.check()?;
                }
                Err((error, _)) => return Err(anyhow!("producing to {topic}: {error}")),
            }
        }
    }

    /// Every partition's end as acknowledged so far, as (topic, partition,
    /// offset after the last acknowledged record).
    /// Takes `ends` as acknowledged already: offsets every later record
    /// lands at or after, though this producer has sent nothing there yet.
    pub fn start_at(&self, ends: impl IntoIterator<Item = (String, i32, i64)>) {
        if let Ok(mut known) = self.inner.context().ends.lock() {
            for (topic, partition, offset) in ends {
                let end = known.entry((topic, partition)).or_default();
                *end = (*end).max(offset);
            }
        }
    }

    pub fn ends(&self) -> Vec<(String, i32, i64)> {
        self.inner
            .context()
            .ends
            .lock()
            .map(|ends| ends.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect())
            .unwrap_or_default()
    }

    /// Tells [`Health`] how many records wait for the broker's ack.
    pub fn report_queued(&self) {
        let queued = self.inner.in_flight_count().max(0) as u64;
        self.health()
            .queued
            .store(queued, std::sync::atomic::Ordering::Relaxed);
    }

    /// The first delivery failure, if any.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.inner.context().failure.lock() {
            Ok(failure) => match failure.as_ref() {
                Some(text) => bail!("Kafka: {text}"),
                None => Ok(()),
            },
            Err(_) => bail!("Kafka producer poisoned"),
        }
    }

    /// Waits until every queued record is acknowledged.
    pub fn finish(&self) -> anyhow::Result<()> {
        self.inner.flush(Duration::from_secs(300)).map_err(|e| {
            anyhow!(
                "Kafka: {} records not acknowledged before the flush timed out: {e}",
                self.inner.in_flight_count()
            )
        })?;
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_brokers_topic_and_params() {
        let a = KafkaAddress::parse("kafka://a:1,b:2/orders").unwrap();
        assert_eq!(a.brokers, "a:1,b:2");
        assert_eq!(a.topic.as_deref(), Some("orders"));
        let b = KafkaAddress::parse("kafka://h:9092?prefix=of.&partitions=4").unwrap();
        assert_eq!(b.topic, None);
        assert_eq!(
            b.params,
            vec![
                ("prefix".to_string(), "of.".to_string()),
                ("partitions".to_string(), "4".to_string())
            ]
        );
        for bad in [
            "h:9092/t",
            "kafka://",
            "kafka://host/t",
            "kafka://h:1/a/b",
            "kafka://h:1?x",
        ] {
            assert!(KafkaAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_option("security.protocol=SASL_SSL").is_ok());
        assert!(parse_option("=x").is_err());
    }
}
