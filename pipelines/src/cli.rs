//! Commands and flags, parsed once at the edge into typed settings.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use operators::gen::GenSpec;
use operators::window::Interval;

use crate::sink::SinkSpec;
use crate::source::kafka::{KafkaRead, StartAt, StopAt};

#[derive(Parser, Debug)]
#[command(
    name = "orderflow",
    version,
    about = "Exact order books, trades and event-time candles from an order stream"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on stderr look: `text` (coloured on a terminal) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pipeline: orders in; events, trades, bbo, candles and late trades out.
    Run(RunArgs),
    /// Re-derive a range of a Kafka orders topic into the sinks, starting from the newest checkpoint at or before the range (or the topic's start).
    Replay(ReplayArgs),
    /// Write a synthetic order stream as JSONL, or produce it to a Kafka topic.
    Gen(GenArgs),
    /// SQL (DataFusion) over the outputs a `dir:` sink wrote: trades, candles, bbo, events, late, positions, exposure, depth.
    Sql(crate::sql::SqlArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Read settings from this TOML file: any of these flags, by the same name (`sinks` a list). Flags given here override it, and `ORDERFLOW_*` environment variables (e.g. ORDERFLOW_RATE; a list separated by spaces) override the file.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Where orders come from: `gen` (the built-in generator), `file:PATH.jsonl`, `file:-` for stdin, or `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`.
    #[arg(long, default_value = "gen")]
    pub source: String,
    /// Where outputs go; repeatable. `dir:PATH` writes events/trades/bbo/candles/late/positions/exposure/depth as JSONL plus Parquet copies; `kafka://HOST:PORT[?prefix=P&partitions=N]` produces them to topics PREFIX{events,trades,bbo,candles,late,positions,exposure,depth}, keyed by symbol (exposure by account); `clickhouse://[USER[:PASSWORD]@]HOST:PORT/DATABASE[?batch_rows=N&flush_ms=M&queue=Q&retry_for=S]` inserts them into tables of those names plus pipeline_metrics (credentials also from CLICKHOUSE_USER and CLICKHOUSE_PASSWORD).
    #[arg(long = "sink", default_value = "dir:./data", value_parser = SinkParser)]
    pub sinks: Vec<SinkSpec>,
    /// The outputs the sinks write, comma-separated: any of events, trades, bbo, candles, late, positions, exposure, depth (e.g. `--intervals 15m --outputs candles` to backfill one interval); default all, but a replay writes the views only when named. The differential views (positions, exposure, depth) are built only when one of them is asked for.
    #[arg(long, value_delimiter = ',', value_parser = parse_output)]
    pub outputs: Option<Vec<usize>>,
    /// Leave out the views (positions, exposure, depth): for runs that want only trades, candles and the other outputs of the books.
    #[arg(long)]
    pub no_views: bool,
    /// Price levels per symbol and side in the `depth` view.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub depth: u32,
    /// How often each symbol tells the views (positions, exposure, depth) what its book did, as wall-clock time (the symbols take turns in a hundred groups, one every hundredth of it); `0ms`: every batch. A symbol's new last price changes the positions row of every account holding it, so each interval writes a row per holder of every traded symbol: a longer interval writes fewer rows of the same truth.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub view_interval: Interval,
    /// Do not create a ClickHouse sink's database and tables; fail if they are missing.
    #[arg(long)]
    pub no_create: bool,
    /// Candle intervals, comma-separated.
    #[arg(long, default_value = "1s,1m,5m,1h", value_delimiter = ',', value_parser = parse_window)]
    pub intervals: Vec<Interval>,
    /// How long after a window's end a late trade still updates its candle.
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub lateness: Interval,
    /// How far event time may run backwards: watermark = max event time seen − this.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub out_of_orderness: Interval,
    /// After this long without messages a partition's watermark advances with processing time.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub idle_timeout: Interval,
    /// Messages read per partition per batch (the unit of progress between workers).
    #[arg(long, default_value_t = 16_384)]
    pub batch: usize,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Paces a `gen` or `file:` source to this many orders per second
    /// (default: as fast as the pipeline goes), e.g. to measure latency
    /// under a given load.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Serve metrics, live streams and a chart over HTTP at this address, e.g. `127.0.0.1:8080` (port 0: any free port; the address is printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,
    /// Keep durable state in this directory: books, open windows, every partition's position and watermark, and each sink's committed state, written atomically at batch boundaries. The same command resumes from the newest complete checkpoint there, and every sink ends up as after one uninterrupted run.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// How often to checkpoint (wall-clock time).
    #[arg(long, default_value = "10s", value_parser = parse_window, requires = "checkpoint")]
    pub checkpoint_interval: Interval,
    /// Checkpoints older than this are removed (the newest is always kept).
    #[arg(long, default_value = "24h", value_parser = parse_interval, requires = "checkpoint")]
    pub checkpoint_retention: Interval,
    #[command(flatten)]
    pub gen: GenFlags,
    #[command(flatten)]
    pub kafka: KafkaFlags,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl RunArgs {
    /// The outputs the sinks write, by index: `--outputs` (all when not
    /// given) less the views under `--no-views`.
    pub fn outputs(&self) -> [bool; operators::output::OUTPUTS.len()] {
        use operators::output::{OUTPUTS, VIEWS};
        std::array::from_fn(|i| {
            self.outputs.as_ref().is_none_or(|o| o.contains(&i))
                && !(self.no_views && VIEWS.contains(&OUTPUTS[i]))
        })
    }
}

/// How a Kafka source reads, and settings for every Kafka client.
#[derive(Args, Debug, Clone)]
pub struct KafkaFlags {
    /// Where a Kafka source starts: earliest, latest, committed, timestamp:MS or offsets:P=O,… (unlisted partitions start earliest).
    #[arg(long, default_value = "earliest")]
    pub start: StartAt,
    /// Makes a Kafka run bounded: latest (the end offsets at start-up) or timestamp:MS (record timestamps). Without it the run follows the topic until stopped.
    #[arg(long)]
    pub stop: Option<StopAt>,
    /// Consumer group of the Kafka source: where `--start committed` reads and where processed offsets are committed, for lag monitoring only (partitions are assigned by Orderflow, never by the group).
    #[arg(long, default_value = "orderflow")]
    pub group: String,
    /// Do not commit offsets to the consumer group.
    #[arg(long)]
    pub no_commit: bool,
    #[command(flatten)]
    pub client: KafkaOptions,
}

impl KafkaFlags {
    pub fn read(&self) -> KafkaRead {
        KafkaRead {
            options: self.client.options.clone(),
            start: self.start.clone(),
            stop: self.stop.clone(),
            group: self.group.clone(),
            commit: !self.no_commit,
        }
    }
}

/// librdkafka settings passed through to every Kafka client.
#[derive(Args, Debug, Clone)]
pub struct KafkaOptions {
    /// A librdkafka setting as key=value, for every Kafka client; repeatable (e.g. security.protocol=SASL_SSL).
    #[arg(long = "kafka-option", value_parser = crate::kafka::parse_option)]
    pub options: Vec<(String, String)>,
}

/// Timely's own scale-out flags.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
    /// Processes in the cluster.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0-based.
    #[arg(short = 'p', long, default_value_t = 0)]
    pub process: usize,
    /// File of `host:port` lines, one per process (default: localhost:2101, 2102, …).
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn timely_config(&self) -> anyhow::Result<timely::Config> {
        if self.workers == 0 || self.processes == 0 || self.process >= self.processes {
            bail!("need --workers ≥ 1, --processes ≥ 1 and --process < --processes");
        }
        let communication = if self.processes == 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            let addresses = match &self.hostfile {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading --hostfile {}", path.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .take(self.processes)
                    .collect(),
                None => (0..self.processes)
                    .map(|i| format!("localhost:{}", 2101 + i))
                    .collect::<Vec<_>>(),
            };
            if addresses.len() < self.processes {
                bail!("--hostfile lists fewer hosts than --processes");
            }
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }
}

/// The generator's shape, shared by `run --source gen` and `gen`.
#[derive(Args, Debug, Clone)]
pub struct GenFlags {
    /// Messages to generate (0: no end).
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: u64,
    /// Accounts the generated orders belong to (0: none): about √K market makers placing most resting orders, the rest small accounts with a few busy ones.
    #[arg(long, default_value_t = 1_000)]
    pub accounts: u32,
    /// Distinct symbols.
    #[arg(long, default_value_t = 100)]
    pub symbols: u32,
    /// Share of messages for the hot symbol SYM0000.
    #[arg(long, default_value_t = 0.3)]
    pub hot_share: f64,
    /// Random seed: the same seed gives the same stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Partitions the symbols are keyed into.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Event time of the first order: `now`, or ms since the Unix epoch. Orders are 1 ms apart, so at `--rate 1000` event time keeps pace with the clock (a live demo's candles land at the current time).
    #[arg(long, default_value = "1700000000000", value_parser = parse_start_time)]
    pub start_time: i64,
}

/// `now` or ms since the Unix epoch.
fn parse_start_time(text: &str) -> Result<i64, String> {
    match text {
        "now" => Ok(crate::source::now_ms()),
        ms => ms
            .parse()
            .map_err(|_| format!("`{ms}`: expected `now` or ms since the Unix epoch")),
    }
}

impl GenFlags {
    pub fn spec(&self) -> anyhow::Result<GenSpec> {
        if !(0.0..=1.0).contains(&self.hot_share) {
            bail!("--hot-share must be between 0 and 1");
        }
        if self.symbols == 0 || self.partitions == 0 {
            bail!("--symbols and --partitions must be at least 1");
        }
        Ok(GenSpec {
            orders: (self.orders > 0).then_some(self.orders),
            symbols: self.symbols,
            hot_share: self.hot_share,
            seed: self.seed,
            partitions: self.partitions,
            start_ts: self.start_time,
            accounts: self.accounts,
        })
    }
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Where the range starts: earliest, timestamp:MS (Kafka record timestamps) or offsets:P=O,… (unlisted partitions start earliest).
    #[arg(long)]
    pub from: StartAt,
    /// Where it ends (exclusive): latest (the end offsets now), timestamp:MS or offsets:P=O,… (unlisted partitions end at latest).
    #[arg(long)]
    pub to: StopAt,
    /// `run`'s flags: --source kafka://…/TOPIC and --checkpoint DIR (the run's checkpoints, read only) are required; --sink, --outputs, --intervals… as for `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(flatten)]
    pub gen: GenFlags,
    /// Output file (default: stdout).
    #[arg(long, conflicts_with = "to")]
    pub out: Option<PathBuf>,
    /// Paces the stream to this many orders per second (default: as fast as it can be written).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Produce to a Kafka topic instead, `kafka://HOST:PORT/TOPIC`: created with --partitions partitions if missing; each order keyed by its symbol, in partition `symbol index % --partitions`, timestamped with its event time.
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaOptions,
}

/// An output's index in [`OUTPUTS`](operators::output::OUTPUTS).
fn parse_output(text: &str) -> Result<usize, String> {
    let outputs = operators::output::OUTPUTS;
    outputs
        .iter()
        .position(|o| o.name == text.trim())
        .ok_or_else(|| {
            let names = outputs.map(|o| o.name).join(", ");
            format!("`{text}` is not an output: {names}")
        })
}

fn parse_interval(text: &str) -> Result<Interval, String> {
    let interval: Interval = text.parse()?;
    if interval.0 < 0 {
        return Err(format!("`{text}` must not be negative"));
    }
    Ok(interval)
}

fn parse_window(text: &str) -> Result<Interval, String> {
    match parse_interval(text)? {
        Interval(0) => Err(format!("`{text}`: a candle interval must be longer than 0")),
        interval => Ok(interval),
    }
}

/// Parses `--sink` into a [`SinkSpec`]. Not a plain function: clap would
/// quote the value in its error, and a ClickHouse URL may hold a password.
#[derive(Clone)]
struct SinkParser;

impl clap::builder::TypedValueParser for SinkParser {
    type Value = SinkSpec;

    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SinkSpec, clap::Error> {
        let invalid = |text: String| clap::Error::raw(clap::error::ErrorKind::InvalidValue, text);
        let text = value
            .to_str()
            .ok_or_else(|| invalid("--sink: not UTF-8\n".into()))?;
        SinkSpec::parse(text).map_err(|e| invalid(format!("--sink: {e:#}\n")))
    }
}
