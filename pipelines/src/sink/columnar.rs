//! Outputs as Arrow: the schema of each output's Parquet copy and of
//! `orderflow sql`'s table, and record batches filled straight from typed
//! records, both read off the output's one description.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use operators::dataflow::Record;
use operators::decimal::{Fixed, Wide, NOTIONAL_SCALE, SCALE};
use operators::output::{Kind, Output, Values};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Every decimal is `Decimal128(38, 8)`: one type for prices and sums, so
/// that SQL compares and adds them without casts.
const DECIMAL: DataType = DataType::Decimal128(38, SCALE as i8);
const NOTIONAL: DataType = DataType::Decimal128(38, NOTIONAL_SCALE as i8);
const UTC: &str = "+00:00";

/// The Arrow schema of an output. Every column is nullable, as in the
/// Parquet files of earlier versions, so that files of any version read as
/// one table.
pub fn schema(output: &Output) -> Schema {
    let fields = output.columns.iter().map(|column| {
        let data_type = match column.kind {
            Kind::Text => DataType::Utf8,
            Kind::Count => DataType::UInt64,
            Kind::Version => DataType::UInt32,
            Kind::Price | Kind::Amount => DECIMAL,
            Kind::Notional => NOTIONAL,
            Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
        };
        Field::new(column.name, data_type, true)
    });
    Schema::new(fields.collect::<Vec<_>>())
}

/// How an output's Parquet copy encodes each column. A dictionary pays
/// where values repeat (symbols, statuses, accounts, ids of resting
/// orders) and costs a hash and compare per value where they do not;
/// sequence numbers and event times climb, which delta encoding packs into
/// a few bits each at no such cost, and decimals are near unique.
pub fn properties(output: &Output) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false);
    for column in output.columns {
        let path = ColumnPath::from(column.name);
        properties = match column.kind {
            Kind::Text => properties.set_column_dictionary_enabled(path, true),
            Kind::Count | Kind::Version | Kind::Time => {
                properties.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED)
            }
            Kind::Price | Kind::Amount | Kind::Notional => properties,
        };
    }
    properties.build()
}

enum Builder {
    Text(StringBuilder),
    Count(UInt64Builder),
    Version(UInt32Builder),
    Decimal(Decimal128Builder),
    Time(TimestampMillisecondBuilder),
}

/// One output's rows in the making, column by column.
pub struct Columns {
    schema: SchemaRef,
    builders: Vec<Builder>,
    /// The column the next value goes to.
    next: usize,
}

impl Columns {
    pub fn new(output: &Output) -> Columns {
        let builders = output.columns.iter().map(|column| match column.kind {
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::Count => Builder::Count(UInt64Builder::new()),
            Kind::Version => Builder::Version(UInt32Builder::new()),
            Kind::Price | Kind::Amount => {
                Builder::Decimal(Decimal128Builder::new().with_data_type(DECIMAL))
            }
            Kind::Notional => Builder::Decimal(Decimal128Builder::new().with_data_type(NOTIONAL)),
            Kind::Time => Builder::Time(TimestampMillisecondBuilder::new().with_timezone(UTC)),
        });
        Columns {
            schema: Arc::new(schema(output)),
            builders: builders.collect(),
            next: 0,
        }
    }

    pub fn push(&mut self, record: &Record) {
        self.next = 0;
        record.values(self);
    }

    /// The rows pushed since the last batch, as a batch.
    pub fn batch(&mut self) -> arrow::error::Result<RecordBatch> {
        let columns = self.builders.iter_mut().map(|builder| -> ArrayRef {
            match builder {
                Builder::Text(b) => Arc::new(b.finish()),
                Builder::Count(b) => Arc::new(b.finish()),
                Builder::Version(b) => Arc::new(b.finish()),
                Builder::Decimal(b) => Arc::new(b.finish()),
                Builder::Time(b) => Arc::new(b.finish()),
            }
        });
        RecordBatch::try_new(Arc::clone(&self.schema), columns.collect())
    }

    fn builder(&mut self) -> &mut Builder {
        self.next += 1;
        &mut self.builders[self.next - 1]
    }
}

/// A value of another kind than its column's: the record and its output's
/// description disagree, which `every_record_follows_its_description` rules out.
fn mismatch(kind: &str) -> ! {
    unreachable!("a {kind} value where the output's description has another kind")
}

impl Values for Columns {
    fn text(&mut self, value: Option<&str>) {
        match self.builder() {
            Builder::Text(b) => b.append_option(value),
            _ => mismatch("text"),
        }
    }

    fn display(&mut self, value: Option<&dyn std::fmt::Display>) {
        match (self.builder(), value) {
            (Builder::Text(b), Some(value)) => {
                let _ = write!(b, "{value}");
                b.append_value("");
            }
            (Builder::Text(b), None) => b.append_null(),
            _ => mismatch("text"),
        }
    }

    fn count(&mut self, value: Option<u64>) {
        match self.builder() {
            Builder::Count(b) => b.append_option(value),
            _ => mismatch("count"),
        }
    }

    fn version(&mut self, value: u32) {
        match self.builder() {
            Builder::Version(b) => b.append_value(value),
            _ => mismatch("version"),
        }
    }

    fn price(&mut self, value: Option<Fixed>) {
        match self.builder() {
            Builder::Decimal(b) => b.append_option(value.map(|p| i128::from(p.0))),
            _ => mismatch("price"),
        }
    }

    fn amount(&mut self, value: Wide) {
        match self.builder() {
            Builder::Decimal(b) => b.append_value(value.0),
            _ => mismatch("amount"),
        }
    }

    fn notional(&mut self, value: i128) {
        match self.builder() {
            Builder::Decimal(b) => b.append_value(value),
            _ => mismatch("notional"),
        }
    }

    fn time(&mut self, value: i64) {
        match self.builder() {
            Builder::Time(b) => b.append_value(value),
            _ => mismatch("time"),
        }
    }
}
