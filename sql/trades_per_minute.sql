-- Trade count, volume and notional by minute, across all symbols.
SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS minute,
       count(*) AS trades,
       sum(qty) AS volume,
       notional(price, qty) AS notional
FROM trades
GROUP BY minute
ORDER BY minute;
