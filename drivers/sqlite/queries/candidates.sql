-- candidates: rendered once per table by newQueries (placeholders: see
-- there). The claim's search, without the write lock: a WAL read blocks no
-- writer, however many rows it steps over (a backlog whose keys are all
-- held). Up to ?1 seqs, as a JSON array; claim.sql takes those of them that
-- are still claimable under the write lock.
SELECT coalesce(json_group_array(seq), '[]') FROM (
	SELECT o.seq FROM {T} o
	WHERE {CLAIMABLE}
	ORDER BY o.seq
	LIMIT ?1)
