-- Spread and mid statistics from bbo: how wide each symbol's top of book is
-- and where it sits, over the quotes where both sides were present.
SELECT symbol,
       count(*) AS quotes,
       min(ask - bid) AS min_spread,
       CAST(avg(ask - bid) AS DECIMAL(38, 8)) AS avg_spread,
       max(ask - bid) AS max_spread,
       CAST(avg((ask + bid) / 2) AS DECIMAL(38, 8)) AS avg_mid
FROM bbo
WHERE bid IS NOT NULL AND ask IS NOT NULL
GROUP BY symbol
ORDER BY symbol;
