package postgres

import (
	"encoding/binary"
	"errors"
)

// tupleCol is one column of a pgoutput tuple: its kind ('n' null, 'u'
// unchanged TOAST, 't' text, 'b' binary) and, for 't' and 'b', its bytes
// (a slice of the message, valid until the next receive).
type tupleCol struct {
	kind byte
	data []byte
}

var errShortTuple = errors.New("postgres: truncated pgoutput tuple")

// decodeChange decodes a pgoutput Insert ('I') or Update ('U') message
// without copying its values (pglogrepl.Parse copies every value byte by
// byte, payloads included: most of the relay's decoding CPU, and an
// update's new tuple is only looked at, never kept). It returns the
// relation id and the new tuple into cols (reused).
func decodeChange(msg []byte, cols []tupleCol) (rel uint32, _ []tupleCol, err error) {
	if len(msg) < 6 {
		return 0, nil, errShortTuple
	}
	typ := msg[0]
	rel = binary.BigEndian.Uint32(msg[1:5])
	p := msg[5:]
	if typ == 'U' && len(p) > 0 && (p[0] == 'K' || p[0] == 'O') {
		// The old key or row: skip it.
		if _, p, err = decodeTuple(p[1:], nil, true); err != nil {
			return 0, nil, err
		}
	}
	if len(p) == 0 || p[0] != 'N' {
		return 0, nil, errors.New("postgres: pgoutput change without a new tuple")
	}
	cols, _, err = decodeTuple(p[1:], cols[:0], false)
	return rel, cols, err
}

// decodeTuple appends the columns of the tuple at the start of p to cols
// (unless skip) and returns the rest of p.
func decodeTuple(p []byte, cols []tupleCol, skip bool) ([]tupleCol, []byte, error) {
	if len(p) < 2 {
		return nil, nil, errShortTuple
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	for range n {
		if len(p) < 1 {
			return nil, nil, errShortTuple
		}
		c := tupleCol{kind: p[0]}
		p = p[1:]
		if c.kind == 't' || c.kind == 'b' {
			if len(p) < 4 {
				return nil, nil, errShortTuple
			}
			l := int(binary.BigEndian.Uint32(p))
			if l < 0 || len(p)-4 < l {
				return nil, nil, errShortTuple
			}
			c.data = p[4 : 4+l]
			p = p[4+l:]
		}
		if !skip {
			cols = append(cols, c)
		}
	}
	return cols, p, nil
}
