-- What each worker did in each few-second period, written by the ClickHouse
-- sink beside the data: counts are per period (sum them over a range),
-- the watermark and queue depth are as of the period's end.
CREATE TABLE IF NOT EXISTS pipeline_metrics (
    ts Int64,
    process UInt32,
    worker UInt32,
    period_ms UInt32,
    orders UInt64,
    trades UInt64,
    late UInt64,
    rejects UInt64,
    watermark Nullable(Int64),
    watermark_lag_ms Nullable(Int64),
    queue_depth UInt32,
    time DateTime DEFAULT toDateTime(intDiv(ts, 1000))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (process, worker, ts)
