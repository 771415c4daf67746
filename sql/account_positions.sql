-- One account's book of positions: per symbol its latest positions row (the
-- highest seq), what it bought and sold, at what average prices, and what
-- the position is worth at the symbol's last trade.
-- param: account = mm-1
SELECT symbol,
       last_value(position ORDER BY seq) AS position,
       last_value(bought ORDER BY seq) AS bought,
       last_value(sold ORDER BY seq) AS sold,
       CAST(last_value(buy_notional ORDER BY seq) / nullif(last_value(bought ORDER BY seq), 0) AS DECIMAL(38, 8)) AS avg_buy,
       CAST(last_value(sell_notional ORDER BY seq) / nullif(last_value(sold ORDER BY seq), 0) AS DECIMAL(38, 8)) AS avg_sell,
       last_value(trades ORDER BY seq) AS trades,
       last_value(last_price ORDER BY seq) AS last_price,
       last_value(exposure ORDER BY seq) AS exposure
FROM positions
WHERE account = $account
GROUP BY symbol
ORDER BY abs(exposure) DESC, symbol;
