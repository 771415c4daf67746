-- The top N price levels per symbol and side (CONTRACT §3 depth), a row
-- each time a level changes: after the symbol's message `seq`. Level 1 is
-- the best; a level that no longer exists has a NULL price and qty 0. The
-- book at message S is, per (symbol, side, level), the row with the highest
-- seq <= S; the key keeps every version for that.
CREATE TABLE IF NOT EXISTS depth (
    symbol String,
    side Enum8('buy' = 1, 'sell' = 2),
    level UInt64,
    price Nullable(Decimal(18, 8)),
    qty Decimal(18, 8),
    orders UInt64,
    seq UInt64
) ENGINE = ReplacingMergeTree
ORDER BY (symbol, side, level, seq)
