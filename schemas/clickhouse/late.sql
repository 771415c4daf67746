-- Trades that came after their window's allowed lateness, per interval
-- they missed. The trade itself is in `trades` as well.
CREATE TABLE IF NOT EXISTS late (
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
    candle_interval String,
    time DateTime DEFAULT toDateTime(intDiv(ts, 1000))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (symbol, candle_interval, seq)
