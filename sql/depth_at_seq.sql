-- A symbol's depth ladder as it stood after its message `seq` (a large seq
-- gives the book now): per side and level, the latest row at or before that
-- message, leaving out levels that no longer existed.
-- param: symbol = SYM0000
-- param: seq = 1000000000
WITH at AS (
    SELECT side, level,
           last_value(price ORDER BY seq) AS price,
           last_value(qty ORDER BY seq) AS qty,
           last_value(orders ORDER BY seq) AS orders,
           max(seq) AS seq
    FROM depth
    WHERE symbol = $symbol AND seq <= $seq
    GROUP BY side, level
)
SELECT side, level, price, qty, orders, seq FROM at
WHERE price IS NOT NULL
ORDER BY side, level;
