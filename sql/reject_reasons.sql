-- Why messages were rejected: each reason's count and its share of all
-- input messages (one event per message).
SELECT reason,
       count(*) AS rejects,
       round(count(*) * 100.0 / (SELECT count(*) FROM events), 3) AS pct_of_messages
FROM events
WHERE status = 'rejected'
GROUP BY reason
ORDER BY rejects DESC, reason;
