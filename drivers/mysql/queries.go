package mysql

import (
	"embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

//go:embed queries/*.sql queries/list.sql.tmpl
var queryFS embed.FS

// queries are the driver's statements, one per queries/*.sql file,
// rendered for the table. A "{IDS}" in a statement is the place of a list
// of bind parameters (see withIDs); values are always bind parameters.
type queries struct {
	claimCandidates, claimLock, claimGaps, markDelivered, markFailed string
	retryIDs, retryDead, purge, stats, get                           string
	ackAnswer, ackExists, ackGet, ackList, ackDue                    string
	ackMarkResent, ackMarkUnacknowledged, ackRearm, ackStats         string
	ackPurge                                                         string
}

// loadQueries renders the driver's statements once, and parses the list
// template that EventList renders per call.
func (d *Driver) loadQueries() error {
	data := struct{ Table, AckTable string }{Table: d.table, AckTable: d.ackTable}
	rendered, err := outboxdriver.RenderQueries(queryFS, "queries", data, nil)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	q := &d.queries
	if err := outboxdriver.BindQueries(rendered, map[string]*string{
		"claim_candidates": &q.claimCandidates, "claim_lock": &q.claimLock, "claim_gaps": &q.claimGaps,
		"mark_delivered": &q.markDelivered, "mark_failed": &q.markFailed,
		"retry_ids": &q.retryIDs, "retry_dead": &q.retryDead, "purge": &q.purge, "stats": &q.stats, "get": &q.get,
		"ack_answer": &q.ackAnswer, "ack_exists": &q.ackExists, "ack_get": &q.ackGet, "ack_list": &q.ackList,
		"ack_due": &q.ackDue, "ack_mark_resent": &q.ackMarkResent, "ack_mark_unacknowledged": &q.ackMarkUnacknowledged,
		"ack_rearm": &q.ackRearm, "ack_stats": &q.ackStats, "ack_purge": &q.ackPurge,
	}); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	d.listTmpl, err = template.New("list.sql.tmpl").Option("missingkey=error").ParseFS(queryFS, "queries/list.sql.tmpl")
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}

// withIDs replaces the {IDS} placeholder with n bind parameters.
func withIDs(query string, n int) string {
	return strings.Replace(query, "{IDS}", strings.TrimSuffix(strings.Repeat("?,", n), ","), 1)
}
