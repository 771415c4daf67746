-- Top movers: the ten symbols whose last trade price moved most from their
-- first over a time range, in percent (either direction).
-- param: from = 0
-- param: to = 4102444800000
WITH range AS (
    SELECT symbol,
           first_value(price ORDER BY ts, seq) AS first_price,
           last_value(price ORDER BY ts, seq) AS last_price,
           count(*) AS trades
    FROM trades
    WHERE ts >= to_timestamp_millis($from) AND ts < to_timestamp_millis($to)
    GROUP BY symbol
),
moves AS (
    SELECT symbol,
           first_price,
           last_price,
           CAST((last_price - first_price) * 100 / first_price AS DECIMAL(38, 4)) AS change_pct,
           trades
    FROM range
)
SELECT * FROM moves
ORDER BY abs(change_pct) DESC, symbol
LIMIT 10;
