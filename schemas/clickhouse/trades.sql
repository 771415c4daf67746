-- Every trade (CONTRACT §3 trades), exact: prices and quantities carry 8
-- fractional digits. (symbol, seq) is the trade's identity, so a replay or
-- a retried insert collapses onto the row already there.
CREATE TABLE IF NOT EXISTS trades (
    trade_id String DEFAULT concat(symbol, '-', toString(seq)),
    symbol String,
    seq UInt64,
    price Decimal(18, 8),
    qty Decimal(18, 8),
    maker_order_id String,
    taker_order_id String,
    taker_side Enum8('buy' = 1, 'sell' = 2),
    ts Int64,
    maker_account Nullable(String),
    taker_account Nullable(String),
    time DateTime DEFAULT toDateTime(intDiv(ts, 1000))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (symbol, seq)
