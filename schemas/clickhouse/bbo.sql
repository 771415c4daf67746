-- Best bid and offer after each message that changed it; NULL for an empty
-- side. Keyed by the message's per-symbol seq.
CREATE TABLE IF NOT EXISTS bbo (
    symbol String,
    seq UInt64,
    bid Nullable(Decimal(18, 8)),
    bid_qty Nullable(Decimal(18, 8)),
    ask Nullable(Decimal(18, 8)),
    ask_qty Nullable(Decimal(18, 8)),
    ts Int64,
    time DateTime DEFAULT toDateTime(intDiv(ts, 1000))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (symbol, seq)
