//! Every output row has exactly the fields `schemas/*.schema.json` names:
//! the required ones, no others, and null only where the schema allows it.
//! The JSON Schemas and the ClickHouse DDL agree with the outputs' one
//! description (`operators::output`).

use orderflow_tests as common;

use common::{rows, run, scratch};
use operators::output::{Kind, Presence, OUTPUTS};
use serde_json::Value;

fn allows_null(property: &Value) -> bool {
    let is_null = |t: &Value| {
        t == "null"
            || t.as_array()
                .is_some_and(|ts| ts.iter().any(|t| t == "null"))
    };
    property.get("type").is_some_and(is_null)
        || property
            .get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|alts| alts.iter().any(allows_null))
}

/// The JSON Schema file of each output.
const SCHEMAS: [(&str, &str); 8] = [
    ("events", "event"),
    ("trades", "trade"),
    ("bbo", "bbo"),
    ("candles", "candle"),
    ("late", "late"),
    ("positions", "position"),
    ("exposure", "exposure"),
    ("depth", "depth"),
];

fn json_schema(output: &str) -> Value {
    let (_, file) = SCHEMAS.iter().find(|(o, _)| *o == output).unwrap();
    let path = common::project("schemas").join(format!("{file}.schema.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn json_schemas_name_the_described_columns() {
    for output in OUTPUTS {
        let schema = json_schema(output.name);
        let properties = schema["properties"].as_object().unwrap();
        let names: Vec<&str> = output.columns.iter().map(|c| c.name).collect();
        let described: Vec<&str> = properties.keys().map(String::as_str).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        let mut found = described.clone();
        found.sort_unstable();
        assert_eq!(sorted, found, "{}", output.name);
        let required = &schema["required"];
        for column in output.columns {
            let property = &properties[column.name];
            let listed = required
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == column.name);
            assert_eq!(
                listed,
                column.presence != Presence::Omitted,
                "{}.{} required",
                output.name,
                column.name
            );
            assert_eq!(
                allows_null(property),
                column.presence == Presence::Nullable,
                "{}.{} null",
                output.name,
                column.name
            );
        }
    }
}

/// The `name Type` lines of `schemas/clickhouse/TABLE.sql`.
fn ddl_columns(table: &str) -> Vec<(String, String)> {
    let path = common::project("schemas/clickhouse").join(format!("{table}.sql"));
    let ddl = std::fs::read_to_string(path).unwrap();
    let create = ddl.find("CREATE TABLE").unwrap();
    let body = &ddl[create + ddl[create..].find('(').unwrap() + 1..ddl.find(") ENGINE").unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("--"))
        .map(|line| {
            let line = line.trim_end_matches(',');
            let (name, rest) = line.split_once(' ').unwrap();
            (name.to_string(), rest.to_string())
        })
        .collect()
}

#[test]
fn clickhouse_tables_hold_the_described_columns_in_their_types() {
    for output in OUTPUTS {
        let columns = ddl_columns(output.name);
        for column in output.columns {
            // `interval` is a keyword in ClickHouse.
            let name = match column.name {
                "interval" => "candle_interval",
                name => name,
            };
            let (_, ddl) = columns
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{}.{name} has no column", output.name));
            let (nullable, ddl) = match ddl.strip_prefix("Nullable(") {
                Some(inner) => (true, inner),
                None => (false, ddl.as_str()),
            };
            assert!(
                !nullable || column.presence != Presence::Required,
                "{}.{name} is required but Nullable",
                output.name
            );
            let expected: &[&str] = match column.kind {
                Kind::Text => &["String", "Enum8("],
                Kind::Count => &["UInt64"],
                Kind::Version => &["UInt32"],
                Kind::Price => &["Decimal(18, 8)"],
                Kind::Amount => &["Decimal(38, 8)"],
                Kind::Notional => &["Decimal(38, 16)"],
                Kind::Time => &["Int64"],
            };
            assert!(
                expected.iter().any(|t| ddl.starts_with(t)),
                "{}.{name} is {ddl}, not {expected:?}",
                output.name
            );
        }
        // Columns beyond the description are computed by the table or
        // say where an event came from.
        for (name, ddl) in &columns {
            let described = output
                .columns
                .iter()
                .any(|c| c.name == name || (c.name == "interval" && name == "candle_interval"));
            assert!(
                described || ddl.contains("DEFAULT") || name.starts_with("source_"),
                "{}.{name} is not described",
                output.name
            );
        }
    }
}

#[test]
fn outputs_follow_their_schemas() {
    let out = scratch("schemas");
    run("gen", &out, &["--orders", "20000", "--workers", "2"]);
    for (output, _) in SCHEMAS {
        let schema = json_schema(output);
        let properties = schema["properties"].as_object().unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let rows = rows(&out, output);
        assert!(!rows.is_empty(), "no {output} to check");
        for row in rows {
            let row = row.as_object().unwrap();
            for field in &required {
                assert!(
                    row.contains_key(*field),
                    "{output} row lacks {field}: {row:?}"
                );
            }
            for (field, value) in row {
                let property = properties
                    .get(field)
                    .unwrap_or_else(|| panic!("{output} has {field}, not in its schema"));
                assert!(
                    !value.is_null() || allows_null(property),
                    "{output}.{field} is null: {row:?}"
                );
            }
        }
    }
}
