-- Counters for operators, in outboxdriver.ScanEventStats' column order.
SELECT
    (SELECT count(*) FROM {{.Table}} WHERE status = 'pending'),
    (SELECT count(*) FROM {{.Table}} WHERE status = 'dead'),
    (SELECT created_at FROM {{.Table}} WHERE status = 'pending' ORDER BY seq LIMIT 1),
    (SELECT count(*) FROM {{.Table}} WHERE status = 'delivered'
        AND delivered_at > statement_timestamp() - interval '1 minute'),
    statement_timestamp()
