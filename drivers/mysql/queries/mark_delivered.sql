-- Records the delivery of the held batch's events ({IDS}: their seqs). A
-- delivered event keeps no last_error of an earlier failed attempt.
UPDATE {{.Table}} SET status = 'delivered', delivered_at = UTC_TIMESTAMP(6),
    attempts = attempts + 1, last_error = NULL
WHERE seq IN ({IDS})
