-- Counters for operators, in outboxdriver.ScanEventStats' column order.
SELECT
    (SELECT COUNT(*) FROM {{.Table}} WHERE status = 'pending'),
    (SELECT COUNT(*) FROM {{.Table}} WHERE status = 'dead'),
    (SELECT created_at FROM {{.Table}} WHERE status = 'pending' ORDER BY seq LIMIT 1),
    (SELECT COUNT(*) FROM {{.Table}} WHERE status = 'delivered'
        AND delivered_at > UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE),
    UTC_TIMESTAMP(6)
