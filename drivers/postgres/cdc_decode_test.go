package postgres

import (
	"encoding/binary"
	"testing"
)

// tuple encodes columns as pgoutput does; nil is a NULL, "\x00u" an
// unchanged TOAST value.
func tuple(cols ...any) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(cols)))
	for _, c := range cols {
		switch v := c.(type) {
		case nil:
			b = append(b, 'n')
		case byte:
			b = append(b, v)
		case string:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

func TestDecodeChange(t *testing.T) {
	t.Parallel()
	insert := append(binary.BigEndian.AppendUint32([]byte{'I'}, 42), 'N')
	insert = append(insert, tuple("1", nil, "pending")...)
	rel, cols, err := decodeChange(insert, nil)
	if err != nil || rel != 42 || len(cols) != 3 || string(cols[0].data) != "1" || cols[1].kind != 'n' || string(cols[2].data) != "pending" {
		t.Fatalf("insert: rel %d cols %+v err %v", rel, cols, err)
	}
	update := append(binary.BigEndian.AppendUint32([]byte{'U'}, 7), 'O')
	update = append(update, tuple("old", "x")...)
	update = append(update, 'N')
	update = append(update, tuple("new", byte('u'))...)
	rel, cols, err = decodeChange(update, cols)
	if err != nil || rel != 7 || len(cols) != 2 || string(cols[0].data) != "new" || cols[1].kind != 'u' {
		t.Fatalf("update: rel %d cols %+v err %v", rel, cols, err)
	}
	// Every truncation of a valid message is an error, never a panic.
	for _, msg := range [][]byte{insert, update} {
		for n := range len(msg) {
			if _, _, err := decodeChange(msg[:n], nil); err == nil {
				t.Fatalf("truncated at %d of %d: no error", n, len(msg))
			}
		}
	}
	// A length that claims more than there is.
	bad := append(binary.BigEndian.AppendUint32([]byte{'I'}, 1), 'N', 0, 1, 't', 0x7f, 0xff, 0xff, 0xff, 'a')
	if _, _, err := decodeChange(bad, nil); err == nil {
		t.Fatal("oversized length: no error")
	}
}
