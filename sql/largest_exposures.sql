-- The ten accounts with the largest gross exposure now: each account's
-- latest exposure row (the highest version), with its net, long and short
-- sides and the number of symbols it holds.
-- param: limit = 10
WITH latest AS (
    SELECT account,
           last_value(gross ORDER BY version) AS gross,
           last_value(net ORDER BY version) AS net,
           last_value(long ORDER BY version) AS long,
           last_value(short ORDER BY version) AS short,
           last_value(symbols ORDER BY version) AS symbols
    FROM exposure
    GROUP BY account
)
SELECT * FROM latest
ORDER BY gross DESC, account
LIMIT $limit;
