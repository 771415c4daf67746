-- What each account's positions are worth (CONTRACT §3 exposure), a row
-- each time it changes. `version` grows with every change of the account's
-- positions: the latest row is argMax(..., version); the key keeps the
-- history and collapses a replay's rows onto the ones already there.
CREATE TABLE IF NOT EXISTS exposure (
    account String,
    gross Decimal(38, 8),
    net Decimal(38, 8),
    long Decimal(38, 8),
    short Decimal(38, 8),
    symbols UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree
ORDER BY (account, version)
