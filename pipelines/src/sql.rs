//! `orderflow sql`: DataFusion over the Parquet copies a `dir:` sink wrote.
//!
//! Tables are registered lazily from files (DataFusion streams them, so a
//! directory larger than memory is fine for scans and aggregates), prices and
//! quantities stay `Decimal128(38, 8)` through the query, and a query file's
//! `-- param: name = default` header lines give its `$name` placeholders
//! defaults that `--param name=value` overrides.

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
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

/// The outputs a `dir:` sink writes, each a table.
pub const TABLES: [&str; 5] = ["events", "trades", "bbo", "candles", "late"];

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

/// A session with every table found in `data` registered.
pub async fn session(data: &Path) -> anyhow::Result<SessionContext> {
    let ctx = SessionContext::new();
    let mut found = 0;
    for table in TABLES {
        // `NAME.parquet` and, from cluster runs, `NAME.pN.parquet`.
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
                name == format!("{table}.parquet")
                    || name
                        .strip_prefix(&format!("{table}.p"))
                        .is_some_and(|rest| {
                            rest.strip_suffix(".parquet").is_some_and(|n| {
                                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                            })
                        })
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
            .with_schema(Arc::new(crate::sink::dir::schema(table)));
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

/// Runs `query` with `params` over the tables of `data`.
pub async fn query(
    data: &Path,
    query: &str,
    params: &[(String, String)],
) -> anyhow::Result<Vec<RecordBatch>> {
    let ctx = session(data).await?;
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
    Ok(frame.collect().await?)
}

/// Writes `batches` to stdout in `format`.
pub fn print(
    batches: &[RecordBatch],
    format: Format,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    match format {
        Format::Table => writeln!(
            out,
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(out);
            for batch in batches {
                writer.write(&decimals_as_text(batch)?)?;
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| anyhow!("starting the query runtime: {e}"))?;
    let batches = runtime.block_on(query(&args.data, &text, &args.params))?;
    print(&batches, args.format, &mut std::io::stdout().lock())
}
