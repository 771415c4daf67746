-- One row per input message (CONTRACT §3 events): count() equals the
-- messages consumed. A message without a readable symbol has symbol '' and
-- seq 0 (seq is 1-based otherwise) and is told apart by its place in its
-- source partition, so a re-sent row collapses with its first copy.
CREATE TABLE IF NOT EXISTS events (
    symbol String,
    order_id Nullable(String),
    seq UInt64,
    status Enum8('accepted' = 1, 'filled' = 2, 'expired' = 3, 'cancelled' = 4, 'replaced' = 5, 'rejected' = 6),
    reason Nullable(String),
    ts Int64,
    raw Nullable(String),
    source_partition UInt32,
    source_offset UInt64,
    time DateTime DEFAULT toDateTime(intDiv(ts, 1000))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (symbol, seq, source_partition, source_offset)
