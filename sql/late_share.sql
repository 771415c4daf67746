-- Late trades per candle interval: how many trades missed their window's
-- allowed lateness, and their share of all trades. Intervals without late
-- trades have no row.
SELECT "interval",
       count(*) AS late_trades,
       round(count(*) * 100.0 / (SELECT count(*) FROM trades), 3) AS late_pct
FROM late
GROUP BY "interval"
ORDER BY "interval";
