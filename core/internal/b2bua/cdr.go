package b2bua

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
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
		LegA:      LegInfo{Transport: c.a.in.Transport, Peer: c.a.in.Source.String(), CallID: c.a.callID},
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

// CDRWriter appends records to a file, durably: a writer goroutine takes
// whatever records have queued, writes them and fsyncs once per batch
// (group commit), so a record is on disk within one fsync of its call's end
// and the call path never waits for the disk. Write never blocks and
// never drops: the queue grows while the disk is slow. A failing disk is
// logged (rate-limited) and its records kept queued and retried.
type CDRWriter struct {
	log  *slog.Logger
	f    *os.File
	mu   sync.Mutex
	q    []Record
	wake chan struct{}
	done chan struct{}
	shut bool
}

// OpenCDR opens (creating, mode 0640) the record file at path for append.
func OpenCDR(path string, log *slog.Logger) (*CDRWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("call detail records: %w", err)
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
		err = errors.Join(err, fmt.Errorf("call detail records: %d not written", left))
	}
	return err
}

func (w *CDRWriter) run() {
	defer close(w.done)
	bw := bufio.NewWriter(w.f)
	enc := json.NewEncoder(bw)
	var lastErr time.Time
	for range w.wake {
		for {
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
			err := w.flush(bw, enc, batch)
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

// flush writes batch and fsyncs. A batch that failed part way may be
// written again in full: a reader de-duplicates by call_id.
func (w *CDRWriter) flush(bw *bufio.Writer, enc *json.Encoder, batch []Record) error {
	for _, r := range batch {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		bw.Reset(w.f)
		return err
	}
	return w.f.Sync()
}
