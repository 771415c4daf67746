-- VWAP and volume by symbol over a time range: what each symbol traded at on
-- average, how much, and in how many trades. Exact decimals throughout:
-- vwap(price, qty) divides the exact notional(price, qty) once and rounds
-- to 8 digits as the candles' vwap is (sum(price * qty) / sum(qty) would
-- overflow DataFusion's decimal division past a notional of about 1.7e10).
-- param: from = 0
-- param: to = 4102444800000
SELECT symbol,
       vwap(price, qty) AS vwap,
       sum(qty) AS volume,
       notional(price, qty) AS notional,
       count(*) AS trades
FROM trades
WHERE ts >= to_timestamp_millis($from) AND ts < to_timestamp_millis($to)
GROUP BY symbol
ORDER BY symbol;
