package postgres

import "github.com/outboxkit/outboxkit/framework/outboxdriver"

// HeldClaimQuery exposes the held claim's statement (parameters: limit,
// FromSeq, ScanLimit) and its session setting to the plan test.
func (d *Driver) HeldClaimQuery() (session, claim string) {
	return d.queries.claimSession, d.queries.claimHeld
}

// ClaimGapsQuery exposes the held claim's gap check (parameter: a JSON array
// of {key, seq, n}) to the plan test.
func (d *Driver) ClaimGapsQuery() string { return d.queries.claimGaps }

// QueuedRows returns how many decoded rows a CDC stream holds ready for
// Next.
func QueuedRows(st outboxdriver.EventStream) int {
	return int(st.(*stream).queued.Load())
}
