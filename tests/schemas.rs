//! Every output row has exactly the fields `schemas/*.schema.json` names:
//! the required ones, no others, and null only where the schema allows it.

use orderflow_tests as common;

use common::{rows, run, scratch};
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

#[test]
fn outputs_follow_their_schemas() {
    let out = scratch("schemas");
    run("gen", &out, &["--orders", "20000", "--workers", "2"]);
    let root = common::project("schemas");
    for (output, schema) in [
        ("events", "event"),
        ("trades", "trade"),
        ("bbo", "bbo"),
        ("candles", "candle"),
        ("late", "late"),
    ] {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("{schema}.schema.json"))).unwrap(),
        )
        .unwrap();
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
