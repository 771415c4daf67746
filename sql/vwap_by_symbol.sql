-- VWAP and volume by symbol over a time range: what each symbol traded at on
-- average, how much, and in how many trades. Exact decimals throughout;
-- vwap rounded to 8 digits as the candles' is.
-- param: from = 0
-- param: to = 4102444800000
SELECT symbol,
       CAST(sum(price * qty) / sum(qty) AS DECIMAL(38, 8)) AS vwap,
       sum(qty) AS volume,
       sum(price * qty) AS notional,
       count(*) AS trades
FROM trades
WHERE ts >= to_timestamp_millis($from) AND ts < to_timestamp_millis($to)
GROUP BY symbol
ORDER BY symbol;
