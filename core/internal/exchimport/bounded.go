package exchimport

import (
	"fmt"
	"io"
)

// runLimited fails a read once more than limit bytes pass without one of
// the separators (for XML '<' and '>', for CSV '\n'): encoding/xml and
// encoding/csv hold a whole text node or record before the reader's own
// bounds (maxValue) see it, so without this one value of a property the
// importer skips would cost memory in proportion to its size.
type runLimited struct {
	r     io.Reader
	name  string
	seps  string
	limit int
	run   int
}

func (l *runLimited) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if l.isSep(c) {
			l.run = 0
			continue
		}
		if l.run++; l.run > l.limit {
			return 0, fmt.Errorf("%w: %s: more than %d bytes in one value", ErrMalformed, l.name, l.limit)
		}
	}
	return n, err
}

func (l *runLimited) isSep(c byte) bool {
	for i := 0; i < len(l.seps); i++ {
		if l.seps[i] == c {
			return true
		}
	}
	return false
}

// maxRecord bounds one CSV record: a few values of at most maxValue each.
const maxRecord = 8 * maxValue
