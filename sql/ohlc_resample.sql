-- OHLC, volume and VWAP of one symbol resampled from trades to any interval
-- with date_bin, including intervals the pipeline was not configured for.
-- Open is the earliest trade by event time (first to arrive on a tie), close
-- the latest.
-- Late trades are included; the pipeline's candles leave them out.
-- param: symbol = SYM0000
-- param: bucket = 1 minute
SELECT symbol,
       date_bin(CAST($bucket AS INTERVAL), ts, TIMESTAMP '1970-01-01T00:00:00Z') AS window_start,
       first_value(price ORDER BY ts, seq) AS open,
       max(price) AS high,
       min(price) AS low,
       last_value(price ORDER BY ts, seq) AS close,
       sum(qty) AS volume,
       vwap(price, qty) AS vwap,
       count(*) AS trades
FROM trades
WHERE symbol = $symbol
GROUP BY symbol, window_start
ORDER BY window_start;
