package b2bua

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umedge/umedge/core/internal/jsonenc"
)

// Record is one call detail record: a JSON line per ended call.
type Record struct {
	CallID    string    `json:"call_id"` // leg B's, the engine's own id of the call
	Gateway   string    `json:"gateway"`
	DialPlan  string    `json:"dial_plan"`
	Pool      string    `json:"pool"`
	Backend   string    `json:"backend"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Start     time.Time `json:"start"`
	Answer    time.Time `json:"answer,omitzero"`
	End       time.Time `json:"end"`
	Duration  float64   `json:"duration_s"` // answered to end; 0 when never answered
	Status    int       `json:"status"`     // the caller's final answer
	Reason    string    `json:"reason"`     // why the call ended
	Redirects int       `json:"redirects"`  // 3xx the engine followed
	LegA      LegInfo   `json:"leg_a"`
	LegB      LegInfo   `json:"leg_b"`
	Media     any       `json:"media,omitempty"`
}

func (c *call) record() Record {
	r := Record{
		CallID: c.b.callID, Gateway: c.target.Gateway, DialPlan: c.target.DialPlan, Pool: c.target.Pool,
		Backend: c.target.Backend.Name, From: fromUser(c.a.invite), To: c.target.User,
		Start: c.started, Answer: c.answerAt, End: c.endAt, Status: c.finalCode, Reason: c.reason,
		Redirects: c.redirects,
		LegA:      c.legAInfo(),
		LegB:      LegInfo{Transport: c.b.tp, Peer: c.b.dst.String(), CallID: c.b.callID},
	}
	if !c.answerAt.IsZero() {
		r.Duration = c.endAt.Sub(c.answerAt).Seconds()
	}
	if c.media != nil {
		r.Media = c.media.Stats()
	}
	return r
}

// errNotWritten counts the records Close could not write.
var errNotWritten = errors.New("call detail records not written")

// CDRWriter appends records to a file, durably: a writer goroutine takes
// whatever records have queued, writes them and fsyncs once per batch
// (group commit, at most one per syncEvery), so a record is on disk within
// syncEvery and one fsync of its call's end, and the call path never waits
// for the disk. Write never blocks and
// never drops: the queue grows while the disk is slow. A failing disk (a
// full one) is logged (rate-limited), what it took of the batch cut off
// again, and the records kept queued and retried.
type CDRWriter struct {
	log  *slog.Logger
	f    *os.File
	mu   sync.Mutex
	q    []Record
	wake chan struct{}
	done chan struct{}
	shut bool
	buf  []byte // the writer goroutine's encoding buffer, kept between batches

	syncs atomic.Uint64 // batches written and fsynced
}

// maxKeptBuf bounds the encoding buffer kept between batches: a burst's
// batch may grow it further, and it is then let go.
const maxKeptBuf = 4 << 20

// OpenCDR opens (creating, mode 0600) the record file at path for append.
func OpenCDR(path string, log *slog.Logger) (*CDRWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600) // appended by flush, which can cut a torn write off
	if err != nil {
		return nil, fmt.Errorf("call detail records: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	w := &CDRWriter{log: log, f: f, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// Write queues r.
func (w *CDRWriter) Write(r Record) {
	w.mu.Lock()
	w.q = append(w.q, r)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close writes what is queued, fsyncs and closes the file.
func (w *CDRWriter) Close() error {
	w.mu.Lock()
	w.shut = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
	w.mu.Lock()
	left := len(w.q)
	w.mu.Unlock()
	err := w.f.Close()
	if left > 0 {
		err = errors.Join(err, fmt.Errorf("%w: %d", errNotWritten, left))
	}
	return err
}

// syncEvery is the least time between two fsyncs: records that end within
// it share one. At thousands of calls a second an fsync per wake-up cost
// more CPU than the records (perf: 7 % of edged at 1,500 calls/s); now a
// record waits at most this long more before its fsync starts.
const syncEvery = 20 * time.Millisecond

func (w *CDRWriter) run() {
	defer close(w.done)
	var lastErr, lastSync time.Time
	for range w.wake {
		for {
			if wait := syncEvery - time.Since(lastSync); wait > 0 {
				w.mu.Lock()
				shut := w.shut
				w.mu.Unlock()
				if !shut {
					time.Sleep(wait)
				}
			}
			lastSync = time.Now()
			w.mu.Lock()
			batch, shut := w.q, w.shut
			w.q = nil
			w.mu.Unlock()
			if len(batch) == 0 {
				if shut {
					return
				}
				break
			}
			err := w.flush(batch)
			if err == nil {
				continue
			}
			// Keep the batch: put it back in front and try again later.
			w.mu.Lock()
			w.q = append(batch, w.q...)
			w.mu.Unlock()
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				w.log.Error("writing call detail records; kept queued", "records", len(batch), "err", err)
			}
			if shut {
				return
			}
			time.Sleep(time.Second)
		}
	}
}

// flush appends batch and fsyncs. A write that fails part way (a full
// disk) is cut off again, so that the retry leaves no torn line.
func (w *CDRWriter) flush(batch []Record) error {
	buf := w.buf[:0]
	defer func() {
		if cap(buf) <= maxKeptBuf {
			w.buf = buf[:0]
		}
	}()
	for i := range batch {
		var err error
		if buf, err = batch[i].appendJSON(buf); err != nil {
			return err
		}
	}
	end, err := w.f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if _, err := w.f.Write(buf); err != nil {
		_ = w.f.Truncate(end)
		return err
	}
	if err := w.f.Sync(); err != nil {
		_ = w.f.Truncate(end)
		return err
	}
	w.syncs.Add(1)
	return nil
}

// appendJSON appends r as one JSON line, the bytes json.Encoder writes
// for it (TestRecordJSONIsEncodingJSON), without reflection over the
// record: at thousands of calls a second encoding/json was most of the
// writer's CPU. Media, whose type the engine does not know, appends
// itself when it is a jsonenc.Appender (the media engine's statistics
// are), else goes through encoding/json.
func (r *Record) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"call_id":`...)
	b = jsonenc.String(b, r.CallID)
	b = append(b, `,"gateway":`...)
	b = jsonenc.String(b, r.Gateway)
	b = append(b, `,"dial_plan":`...)
	b = jsonenc.String(b, r.DialPlan)
	b = append(b, `,"pool":`...)
	b = jsonenc.String(b, r.Pool)
	b = append(b, `,"backend":`...)
	b = jsonenc.String(b, r.Backend)
	b = append(b, `,"from":`...)
	b = jsonenc.String(b, r.From)
	b = append(b, `,"to":`...)
	b = jsonenc.String(b, r.To)
	var err error
	b = append(b, `,"start":`...)
	if b, err = jsonenc.Time(b, r.Start); err != nil {
		return b, err
	}
	if !r.Answer.IsZero() {
		b = append(b, `,"answer":`...)
		if b, err = jsonenc.Time(b, r.Answer); err != nil {
			return b, err
		}
	}
	b = append(b, `,"end":`...)
	if b, err = jsonenc.Time(b, r.End); err != nil {
		return b, err
	}
	b = append(b, `,"duration_s":`...)
	if b, err = jsonenc.Float(b, r.Duration); err != nil {
		return b, err
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"reason":`...)
	b = jsonenc.String(b, r.Reason)
	b = append(b, `,"redirects":`...)
	b = strconv.AppendInt(b, int64(r.Redirects), 10)
	b = append(b, `,"leg_a":`...)
	b = r.LegA.appendJSON(b)
	b = append(b, `,"leg_b":`...)
	b = r.LegB.appendJSON(b)
	if r.Media != nil {
		b = append(b, `,"media":`...)
		if a, ok := r.Media.(jsonenc.Appender); ok {
			if b, err = a.AppendJSON(b); err != nil {
				return b, err
			}
		} else {
			m, err := json.Marshal(r.Media)
			if err != nil {
				return b, err
			}
			b = append(b, m...)
		}
	}
	return append(b, "}\n"...), nil
}

func (l *LegInfo) appendJSON(b []byte) []byte {
	b = append(b, `{"transport":`...)
	b = jsonenc.String(b, string(l.Transport))
	b = append(b, `,"peer":`...)
	b = jsonenc.String(b, l.Peer)
	b = append(b, `,"call_id":`...)
	b = jsonenc.String(b, l.CallID)
	return append(b, '}')
}
