//! Outputs as ClickHouse rows: RowBinary encoded straight from typed
//! records through the outputs' one description, laid out by each table's
//! own DDL (the column's name there, whether it is Nullable, an Enum8's
//! codes, or a column the table computes itself).

use anyhow::{anyhow, bail};
use operators::dataflow::Record;
use operators::decimal::{Fixed, Wide};
use operators::output::{Output, Values, OUTPUTS};

/// Columns a table has beyond the description: where an event came from,
/// which tells apart the events of messages without a symbol.
const ORIGIN: [&str; 2] = ["source_partition", "source_offset"];

/// Where one described column goes.
#[derive(Debug, PartialEq)]
enum Place {
    /// The table computes it (`DEFAULT`): not sent.
    Computed,
    /// A nullable described value goes into a non-Nullable column (a sort
    /// key) as its type's default: `""` or 0.
    Value { nullable: bool },
    /// An `Enum8`: text sent as its code.
    Code(Vec<(String, i8)>),
}

/// How one output's rows are inserted.
#[derive(Debug)]
pub struct Layout {
    /// `INSERT INTO table (columns…) FORMAT RowBinary`.
    pub insert: String,
    places: Vec<Place>,
    origin: bool,
}

/// The layouts of every output, in `OUTPUTS` order, from `ddl(table)`.
pub fn layouts(ddl: impl Fn(&str) -> Option<&'static str>) -> anyhow::Result<Vec<Layout>> {
    OUTPUTS
        .iter()
        .map(|output| {
            let text = ddl(output.name).ok_or_else(|| anyhow!("no DDL for {}", output.name))?;
            layout(output, text)
        })
        .collect()
}

/// `name Type…` of each column of a `CREATE TABLE` statement.
fn columns(ddl: &str) -> Vec<(&str, &str)> {
    let start = ddl.find("CREATE TABLE").unwrap_or(0);
    let open = ddl[start..].find('(').map_or(0, |i| start + i + 1);
    let close = ddl.rfind(") ENGINE").unwrap_or(ddl.len());
    ddl[open..close]
        .lines()
        .map(|line| line.trim().trim_end_matches(','))
        .filter(|line| !line.is_empty() && !line.starts_with("--"))
        .filter_map(|line| line.split_once(' '))
        .collect()
}

/// The table's name for a described column (`interval` is a keyword).
fn column_name(name: &str) -> &str {
    match name {
        "interval" => "candle_interval",
        name => name,
    }
}

fn layout(output: &Output, ddl: &str) -> anyhow::Result<Layout> {
    let table = columns(ddl);
    let mut names = Vec::new();
    let mut places = Vec::new();
    for column in output.columns {
        let name = column_name(column.name);
        let Some((_, kind)) = table.iter().find(|(n, _)| *n == name) else {
            bail!("table {} has no column {name}", output.name);
        };
        let place = if kind.contains(" DEFAULT ") {
            Place::Computed
        } else if let Some(codes) = kind.strip_prefix("Enum8(") {
            Place::Code(enum_codes(codes))
        } else {
            Place::Value {
                nullable: kind.starts_with("Nullable("),
            }
        };
        if place != Place::Computed {
            names.push(name);
        }
        places.push(place);
    }
    let origin = ORIGIN.iter().all(|o| table.iter().any(|(n, _)| n == o));
    if origin {
        names.extend(ORIGIN);
    }
    Ok(Layout {
        insert: format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            output.name,
            names.join(", ")
        ),
        places,
        origin,
    })
}

/// `'buy' = 1, 'sell' = 2)` as (word, code) pairs.
fn enum_codes(text: &str) -> Vec<(String, i8)> {
    text.split(',')
        .filter_map(|pair| {
            let (word, code) = pair.split_once('=')?;
            let word = word.trim().trim_matches('\'');
            let code = code.trim().trim_end_matches(')').trim().parse().ok()?;
            Some((word.to_string(), code))
        })
        .collect()
}

impl Layout {
    /// Appends `record` to `out` as one RowBinary row.
    pub fn encode(&self, record: &Record, out: &mut Vec<u8>) {
        let mut row = Row {
            out,
            places: &self.places,
            next: 0,
            scratch: String::new(),
        };
        record.values(&mut row);
        if let (true, Record::Event(event)) = (self.origin, record) {
            out.extend_from_slice(&event.origin.0.to_le_bytes());
            out.extend_from_slice(&event.origin.1.to_le_bytes());
        }
    }
}

struct Row<'a> {
    out: &'a mut Vec<u8>,
    places: &'a [Place],
    next: usize,
    /// Where displayed text is written before it is sent.
    scratch: String,
}

impl Row<'_> {
    fn place(&mut self) -> &Place {
        self.next += 1;
        &self.places[self.next - 1]
    }

    /// Writes the Nullable flag where the column has one; whether a value
    /// follows (a non-Nullable column takes its default for `None`).
    fn present<T>(&mut self, value: &Option<T>) -> bool {
        match self.place() {
            Place::Computed => false,
            Place::Value { nullable: true } => {
                self.out.push(u8::from(value.is_none()));
                value.is_some()
            }
            _ => true,
        }
    }

    fn string(&mut self, text: &str) {
        let mut len = text.len();
        // LEB128.
        while len >= 0x80 {
            self.out.push((len as u8) | 0x80);
            len >>= 7;
        }
        self.out.push(len as u8);
        self.out.extend_from_slice(text.as_bytes());
    }

    fn text_at(&mut self, place: usize, text: Option<&str>) {
        match &self.places[place] {
            Place::Computed => {}
            Place::Code(codes) => {
                let code = codes
                    .iter()
                    .find(|(w, _)| Some(w.as_str()) == text)
                    .map_or(0, |(_, c)| *c);
                self.out.push(code as u8);
            }
            Place::Value { nullable } => {
                if *nullable {
                    self.out.push(u8::from(text.is_none()));
                }
                if text.is_some() || !nullable {
                    self.string(text.unwrap_or(""));
                }
            }
        }
    }
}

impl Values for Row<'_> {
    fn text(&mut self, value: Option<&str>) {
        self.next += 1;
        self.text_at(self.next - 1, value);
    }

    fn display(&mut self, value: Option<&dyn std::fmt::Display>) {
        self.next += 1;
        if self.places[self.next - 1] == Place::Computed {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let text = value.map(|v| {
            use std::fmt::Write as _;
            let _ = write!(scratch, "{v}");
            scratch.as_str()
        });
        self.text_at(self.next - 1, text);
        self.scratch = scratch;
    }

    fn count(&mut self, value: Option<u64>) {
        if self.present(&value) {
            self.out
                .extend_from_slice(&value.unwrap_or(0).to_le_bytes());
        }
    }

    fn version(&mut self, value: u32) {
        if self.present(&Some(value)) {
            self.out.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// `Decimal(18, 8)`: the scaled `i64`.
    fn price(&mut self, value: Option<Fixed>) {
        if self.present(&value) {
            let scaled = value.map_or(0, |p| p.0);
            self.out.extend_from_slice(&scaled.to_le_bytes());
        }
    }

    /// `Decimal(38, 8)`: the scaled `i128`.
    fn amount(&mut self, value: Wide) {
        self.notional(value.0);
    }

    /// `Decimal(38, 16)` (or 8, for an amount): the scaled `i128`.
    fn notional(&mut self, value: i128) {
        if self.present(&Some(value)) {
            self.out.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn time(&mut self, value: i64) {
        if self.present(&Some(value)) {
            self.out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::clickhouse::DDL;

    fn ddl(table: &str) -> Option<&'static str> {
        DDL.iter().find(|(t, _)| *t == table).map(|(_, d)| *d)
    }

    #[test]
    fn every_output_is_laid_out_by_its_table() {
        let layouts = layouts(ddl).unwrap();
        assert_eq!(
            layouts[1].insert,
            "INSERT INTO trades (symbol, seq, price, qty, maker_order_id, taker_order_id, taker_side, ts, maker_account, taker_account) FORMAT RowBinary"
        );
        assert!(layouts[0]
            .insert
            .ends_with("raw, source_partition, source_offset) FORMAT RowBinary"));
        assert!(layouts[3].insert.contains("candle_interval"));
        assert_eq!(
            layouts[1].places[7],
            Place::Code(vec![("buy".into(), 1), ("sell".into(), 2)])
        );
    }

    #[test]
    fn rows_are_row_binary() {
        use operators::order::Side;
        use operators::output::Trade;
        let layouts = layouts(ddl).unwrap();
        let trade = Record::Trade(Trade {
            symbol: "AB".into(),
            seq: 2,
            price: Fixed(150_000_000),
            qty: Fixed(1),
            maker_order_id: "m".into(),
            taker_order_id: "t".into(),
            taker_side: Side::Sell,
            ts: 7,
            maker_account: Some("mm".into()),
            taker_account: None,
        });
        let mut out = Vec::new();
        layouts[1].encode(&trade, &mut out);
        let mut want = vec![2, b'A', b'B'];
        want.extend(2u64.to_le_bytes());
        want.extend(150_000_000i64.to_le_bytes());
        want.extend(1i64.to_le_bytes());
        want.extend([1, b'm', 1, b't', 2]);
        want.extend(7i64.to_le_bytes());
        // Nullable: 0 and the value, or 1 for NULL.
        want.extend([0, 2, b'm', b'm', 1]);
        assert_eq!(out, want);
    }
}
