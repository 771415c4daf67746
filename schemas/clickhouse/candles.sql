-- OHLCV per symbol, interval and window. A late trade within the allowed
-- lateness re-emits its candle with version + 1: the highest version is the
-- truth, which the engine keeps on merge (query with FINAL or argMax to see
-- it before the merge). volume and vwap are wide: sums can pass 10^10.
-- The contract's `interval` is `candle_interval` here: ClickHouse 18.16
-- cannot reload a table with a column named like its INTERVAL keyword.
CREATE TABLE IF NOT EXISTS candles (
    symbol String,
    candle_interval String,
    window_start Int64,
    window_end Int64,
    open Decimal(18, 8),
    high Decimal(18, 8),
    low Decimal(18, 8),
    close Decimal(18, 8),
    volume Decimal(38, 8),
    vwap Decimal(38, 8),
    trades UInt64,
    version UInt32,
    time DateTime DEFAULT toDateTime(intDiv(window_start, 1000))
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(time)
ORDER BY (symbol, candle_interval, window_start)
