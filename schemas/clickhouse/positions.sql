-- What each account holds of each symbol (CONTRACT §3 positions), a row
-- each time it changes: after the symbol's trade `seq`. The key keeps every
-- version (a replay collapses onto the rows already there); the latest per
-- (account, symbol) is the one with the highest seq: argMax(..., seq).
-- Notionals keep all 16 fractional digits of Σ price × qty.
CREATE TABLE IF NOT EXISTS positions (
    account String,
    symbol String,
    position Decimal(38, 8),
    bought Decimal(38, 8),
    sold Decimal(38, 8),
    buy_notional Decimal(38, 16),
    sell_notional Decimal(38, 16),
    trades UInt64,
    last_price Decimal(18, 8),
    exposure Decimal(38, 8),
    seq UInt64
) ENGINE = ReplacingMergeTree
ORDER BY (account, symbol, seq)
