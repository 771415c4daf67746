//! `orderflow sql`: DataFusion over the Parquet copies a `dir:` sink wrote,
//! or over a range of the topics a `kafka://` sink wrote.
//!
//! Tables are registered lazily from files (DataFusion streams them, so a
//! directory larger than memory is fine for scans and aggregates), prices and
//! quantities stay `Decimal128(38, 8)` through the query, and a query file's
//! `-- param: name = default` header lines give its `$name` placeholders
//! defaults that `--param name=value` overrides. `vwap(price, qty)` and
//! `notional(price, qty)` are registered beside DataFusion's functions (see
//! [`notional`]).

mod notional;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use crate::kafka::KafkaAddress;
use crate::source::kafka::{read_range, StartAt};
use operators::output::OUTPUTS;
use rdkafka::Message;

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The query; or use --file.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub query: Option<String>,
    /// Run a query file, such as one from `sql/`.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A value for the query's `$name` placeholder: `--param symbol=SYM0000`. Repeatable.
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// The directory a `dir:` sink wrote.
    #[arg(long, default_value = "./data")]
    pub data: PathBuf,
    /// Query the output topics a `kafka://` sink wrote instead: `HOST:PORT` or `kafka://HOST:PORT[?prefix=P]`.
    #[arg(long)]
    pub kafka: Option<String>,
    /// With --kafka: only records stamped at or after this (ms since the epoch).
    #[arg(long, requires = "kafka")]
    pub from: Option<i64>,
    /// With --kafka: only records stamped before this (ms since the epoch).
    #[arg(long, requires = "kafka")]
    pub to: Option<i64>,
    #[command(flatten)]
    pub client: crate::cli::KafkaOptions,
    /// Memory the query may hold (e.g. 512M, 4G); sorts and aggregates past it spill to temporary files, and a plan that cannot spill fails with a clear error.
    #[arg(long, default_value = "4G", value_parser = parse_bytes)]
    pub memory_limit: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    Csv,
    /// One JSON object per line.
    Json,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=value"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// `512M`, `4G`, `65536`: a size in bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, scale) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1usize << 10),
        Some((i, 'M' | 'm')) => (&text[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}`: expected a size such as 512M or 4G"))
}

/// A session whose operators share one spilling memory pool of `limit`
/// bytes, so a query over more data than memory streams and spills
/// instead of growing; with Orderflow's own functions.
fn context(limit: usize) -> anyhow::Result<SessionContext> {
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
        .build_arc()?;
    let ctx =
        SessionContext::new_with_config_rt(datafusion::prelude::SessionConfig::new(), runtime);
    for udaf in notional::udafs() {
        ctx.register_udaf(udaf);
    }
    Ok(ctx)
}

/// `-- param: name = default` lines of a query file's header.
pub fn declared_params(query: &str) -> Vec<(String, String)> {
    query
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--")?.trim().strip_prefix("param:"))
        .filter_map(|p| parse_param(p).ok())
        .collect()
}

/// A parameter's SQL value: integers as `BIGINT`, anything else as text.
fn scalar(value: &str) -> ScalarValue {
    match value.parse::<i64>() {
        Ok(n) => ScalarValue::Int64(Some(n)),
        Err(_) => ScalarValue::Utf8(Some(value.to_string())),
    }
}

/// Where the tables come from.
pub enum Tables<'a> {
    Dir(&'a Path),
    Kafka {
        address: KafkaAddress,
        options: &'a [(String, String)],
        from: Option<i64>,
        to: Option<i64>,
    },
}

/// A session with every table found registered.
pub async fn session(tables: &Tables<'_>, memory_limit: usize) -> anyhow::Result<SessionContext> {
    let ctx = context(memory_limit)?;
    match tables {
        Tables::Dir(data) => dir_session(ctx, data).await,
        Tables::Kafka {
            address,
            options,
            from,
            to,
        } => kafka_session(ctx, address, options, *from, *to),
    }
}

/// Each output topic's records in the range, decoded into Arrow batches as
/// they are read and held in memory: a Kafka range is bounded by `--from`,
/// `--to` and the end offsets at start-up.
fn kafka_session(
    ctx: SessionContext,
    address: &KafkaAddress,
    options: &[(String, String)],
    from: Option<i64>,
    to: Option<i64>,
) -> anyhow::Result<SessionContext> {
    let prefix = address
        .params
        .iter()
        .find(|(k, _)| k == "prefix")
        .map_or("", |(_, v)| v.as_str());
    let probe = address.client(&[], options)?;
    let mut found = 0;
    for output in OUTPUTS {
        let table = output.name;
        let topic = format!("{prefix}{table}");
        if crate::kafka::partitions(&probe, &topic)?.is_none() {
            continue;
        }
        found += 1;
        let schema = Arc::new(crate::sink::columnar::schema(output));
        let mut decoder =
            datafusion::arrow::json::ReaderBuilder::new(Arc::clone(&schema)).build_decoder()?;
        let mut batches = Vec::new();
        let start = from.map_or(StartAt::Earliest, StartAt::Timestamp);
        let within = |ts: Option<i64>| {
            let ts = ts.unwrap_or(i64::MIN);
            from.is_none_or(|f| ts >= f) && to.is_none_or(|t| ts < t)
        };
        read_range(address, options, &topic, start, within, |record| {
            let value = record.payload().unwrap_or_default();
            // The decoder takes bytes only up to a full batch: flush and
            // go on until the whole record (and its line end) is in.
            for mut rest in [value, b"\n".as_slice()] {
                while !rest.is_empty() {
                    let taken = decoder
                        .decode(rest)
                        .with_context(|| format!("{topic}: not an Orderflow {table} record"))?;
                    rest = &rest[taken..];
                    if !rest.is_empty() || decoder.len() >= BATCH_ROWS {
                        batches.extend(decoder.flush()?);
                    }
                }
            }
            Ok(())
        })?;
        batches.extend(decoder.flush()?);
        let provider = MemTable::try_new(schema, vec![batches])?;
        ctx.register_table(table, Arc::new(provider))?;
    }
    if found == 0 {
        bail!(
            "no output topics {prefix}{{{}}} on {}",
            OUTPUTS.map(|o| o.name).join(","),
            address.brokers
        );
    }
    Ok(ctx)
}

/// Rows per Arrow batch decoded from Kafka.
const BATCH_ROWS: usize = 8_192;

/// Whether `name` is a Parquet copy of `table`: `NAME.parquet`, from
/// cluster runs `NAME.pN.parquet`, and with checkpoints one part per
/// checkpoint, `NAME-ID.parquet` or `NAME.pN-ID.parquet`.
fn is_copy_of(name: &str, table: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(mut rest) = name
        .strip_prefix(table)
        .and_then(|r| r.strip_suffix(".parquet"))
    else {
        return false;
    };
    if let Some((head, part)) = rest.rsplit_once('-') {
        if !digits(part) {
            return false;
        }
        rest = head;
    }
    match rest.strip_prefix(".p") {
        Some(process) => digits(process),
        None => rest.is_empty(),
    }
}

/// A session with every table found in `data` registered.
async fn dir_session(ctx: SessionContext, data: &Path) -> anyhow::Result<SessionContext> {
    let mut found = 0;
    for output in OUTPUTS {
        let table = output.name;
        let mut files: Vec<PathBuf> = std::fs::read_dir(data)
            .with_context(|| {
                format!(
                    "reading {}: run `orderflow run` first, or give --data",
                    data.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                is_copy_of(name, table)
            })
            .collect();
        files.sort();
        if files.is_empty() {
            continue;
        }
        found += 1;
        let urls = files
            .iter()
            .map(|f| ListingTableUrl::parse(f.display().to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // The schema is ours, so it is given rather than inferred.
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(
                ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet"),
            )
            .with_schema(Arc::new(crate::sink::columnar::schema(output)));
        let provider = ListingTable::try_new(config)?;
        ctx.register_table(table, Arc::new(provider))?;
    }
    if found == 0 {
        bail!(
            "no Parquet outputs in {}: run `orderflow run` first, or give --data",
            data.display()
        );
    }
    Ok(ctx)
}

/// Runs `query` with `params` over `tables`: its rows as a stream, so
/// that a large result is written as it is computed, never held whole.
pub async fn query(
    tables: &Tables<'_>,
    query: &str,
    params: &[(String, String)],
    memory_limit: usize,
) -> anyhow::Result<SendableRecordBatchStream> {
    let ctx = session(tables, memory_limit).await?;
    let mut values: HashMap<String, ScalarValue> = declared_params(query)
        .into_iter()
        .map(|(k, v)| (k, scalar(&v)))
        .collect();
    values.extend(params.iter().map(|(k, v)| (k.clone(), scalar(v))));
    let frame = ctx.sql(query).await?;
    let frame = match values.is_empty() {
        true => frame,
        false => frame.with_param_values(values)?,
    };
    Ok(frame.execute_stream().await?)
}

/// Writes the rows to `out` in `format`: CSV and JSON batch by batch as
/// they arrive; the aligned table needs every row to size its columns.
pub async fn print(
    mut rows: SendableRecordBatchStream,
    format: Format,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = rows.next().await {
                batches.push(batch?);
            }
            writeln!(
                out,
                "{}",
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)?
            )?
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            while let Some(batch) = rows.next().await {
                writer.write(&batch?)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(out);
            while let Some(batch) = rows.next().await {
                writer.write(&decimals_as_text(&batch?)?)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

/// Decimal columns as their exact text: JSON numbers would be read back as
/// binary floating point by most consumers, so decimals travel as strings,
/// as they do in every other Orderflow output.
fn decimals_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Decimal128(..) | DataType::Decimal256(..) => {
                columns.push(datafusion::arrow::compute::cast(column, &DataType::Utf8)?);
                fields.push(Field::new(
                    field.name(),
                    DataType::Utf8,
                    field.is_nullable(),
                ));
            }
            _ => {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// `orderflow sql`.
pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let text = match (&args.query, &args.file) {
        (Some(query), _) => query.clone(),
        (None, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        (None, None) => bail!("give a query or --file"),
    };
    // A thread per core: DataFusion runs a query's partitions as tasks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .map_err(|e| anyhow!("starting the query runtime: {e}"))?;
    let tables = match &args.kafka {
        None => Tables::Dir(&args.data),
        Some(address) => Tables::Kafka {
            address: KafkaAddress::parse(&match address.starts_with("kafka://") {
                true => address.clone(),
                false => format!("kafka://{address}"),
            })?,
            options: &args.client.options,
            from: args.from,
            to: args.to,
        },
    };
    runtime.block_on(async {
        let rows = query(&tables, &text, &args.params, args.memory_limit).await?;
        print(rows, args.format, &mut std::io::stdout().lock()).await
    })
}

#[cfg(test)]
mod tests {
    use super::is_copy_of;

    #[test]
    fn parquet_copies_are_found_whole_per_process_and_per_checkpoint() {
        for name in [
            "trades.parquet",
            "trades.p2.parquet",
            "trades-00000007.parquet",
            "trades.p1-00000012.parquet",
        ] {
            assert!(is_copy_of(name, "trades"), "{name}");
        }
        for name in [
            "trades.parquet.tmp",
            "trades-.parquet",
            "trades-x.parquet",
            "trades.p.parquet",
            "tradesx.parquet",
            "late.parquet",
        ] {
            assert!(!is_copy_of(name, "trades"), "{name}");
        }
    }
}
