#!/usr/bin/env python3
"""Runs Orderflow's ClickHouse DDL and queries on current ClickHouse.

The test server is ClickHouse 18.16; users run current releases. chdb-core
embeds the current engine in-process, so this script proves the same DDL
and the same (macro-expanded) dashboard queries work there too.

    current_clickhouse.py DDL_DIR DATA_DIR < queries.json

DATA_DIR holds TABLE.jsonl files (JSONEachRow, as exported from the test
server). Prints, as JSON, the number of rows each query returned, in order;
exits 1 naming the first statement that failed.
"""

import json
import pathlib
import sys

from chdb import session


def main() -> int:
    ddl_dir, data_dir = map(pathlib.Path, sys.argv[1:3])
    queries = json.load(sys.stdin)
    db = session.Session()
    db.query("CREATE DATABASE IF NOT EXISTS orderflow")
    db.query("USE orderflow")
    for ddl in sorted(ddl_dir.glob("*.sql")):
        try:
            db.query(ddl.read_text())
        except Exception as e:  # the engine's own message says why
            print(f"{ddl.name}: {e}", file=sys.stderr)
            return 1
    for data in sorted(data_dir.glob("*.jsonl")):
        rows = data.read_text()
        if rows.strip():
            db.query(f"INSERT INTO {data.stem} FORMAT JSONEachRow {rows}")
    counts = []
    for query in queries:
        try:
            result = db.query(query, "JSONEachRow")
        except Exception as e:
            print(f"{query}\n{e}", file=sys.stderr)
            return 1
        counts.append(sum(1 for line in str(result).splitlines() if line.strip()))
    json.dump(counts, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
