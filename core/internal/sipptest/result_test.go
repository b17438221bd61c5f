package sipptest

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return b
}

// The samples are the files of a real run: 10 uac_302 calls against a
// responder that answered every third INVITE with 404.
func TestParseSample(t *testing.T) {
	var res Result
	res.Codes = map[int]int{}
	if err := res.parseStats(readTestdata(t, "uac_302_stat.csv")); err != nil {
		t.Fatalf("parseStats() = %v", err)
	}
	if err := res.addCounts(readTestdata(t, "uac_302_counts.csv")); err != nil {
		t.Fatalf("addCounts() = %v", err)
	}
	res.addErrorCodes(readTestdata(t, "uac_302_error_codes.csv"))

	if res.Created != 10 || res.Successful != 7 || res.Failed != 3 || res.Retransmissions != 0 {
		t.Errorf("created/successful/failed/retrans = %d/%d/%d/%d, want 10/7/3/0",
			res.Created, res.Successful, res.Failed, res.Retransmissions)
	}
	if want := map[int]int{302: 7, 404: 3}; !maps.Equal(res.Codes, want) {
		t.Errorf("Codes = %v, want %v", res.Codes, want)
	}
	if got := res.Counters["FailedUnexpectedMessage"]; got != 3 {
		t.Errorf("Counters[FailedUnexpectedMessage] = %d, want 3", got)
	}
	if got, want := res.FailedFraction(), 0.3; got != want {
		t.Errorf("FailedFraction() = %v, want %v", got, want)
	}
	if want := 1_009_980 * time.Microsecond; res.Elapsed != want {
		t.Errorf("Elapsed = %v, want %v", res.Elapsed, want)
	}
	if got := res.Incomplete(); got != 0 {
		t.Errorf("Incomplete() = %d, want 0", got)
	}
}

func TestParseStats(t *testing.T) {
	const header = "StartTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);Retransmissions(P);Retransmissions(C);CallLength(C);\n"
	tests := []struct {
		name       string
		give       string
		wantErr    error
		wantCreate int
		wantOK     int
		wantFailed int
		wantRetr   int
	}{
		{
			name:       "last full row wins",
			give:       header + "t0;5;1;1;0;0;0;0;00:00:00;\nt1;9;7;8;1;1;2;3;00:00:01;\n",
			wantCreate: 9, wantOK: 8, wantFailed: 1, wantRetr: 3,
		},
		{
			name:       "short trailing rows are skipped",
			give:       header + "t1;9;7;8;1;1;2;3;00:00:01;\nt2;x;\n",
			wantCreate: 9, wantOK: 8, wantFailed: 1, wantRetr: 3,
		},
		{name: "header only", give: header, wantErr: ErrNoStats},
		{name: "empty", give: "", wantErr: ErrNoStats},
		{name: "no call counters", give: "A(C);B(C);\n1;2;\n", wantErr: errBadStats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res Result
			err := res.parseStats([]byte(tt.give))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parseStats() = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStats() = %v", err)
			}
			if res.Created != tt.wantCreate || res.Successful != tt.wantOK || res.Failed != tt.wantFailed || res.Retransmissions != tt.wantRetr {
				t.Errorf("got %d/%d/%d/%d, want %d/%d/%d/%d", res.Created, res.Successful, res.Failed, res.Retransmissions,
					tt.wantCreate, tt.wantOK, tt.wantFailed, tt.wantRetr)
			}
		})
	}
}

func TestAddCounts(t *testing.T) {
	tests := []struct {
		name string
		give string
		want map[int]int
	}{
		{
			name: "final codes, provisional left out",
			give: "CurrentTime;ElapsedTime;0_INVITE_Sent;1_100_Recv;2_404_Recv;3_302_Recv;3_302_Unexp;4_ACK_Sent;\nt;e;5;5;1;4;9;5;\n",
			want: map[int]int{302: 4, 404: 1},
		},
		{
			name: "same code at two indexes adds up",
			give: "CurrentTime;ElapsedTime;2_302_Recv;5_302_Recv;\nt;e;3;3;\n",
			want: map[int]int{302: 6},
		},
		{
			name: "zero counts are omitted",
			give: "CurrentTime;ElapsedTime;2_503_Recv;\nt;e;0;\n",
			want: map[int]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Result{Codes: map[int]int{}}
			if err := res.addCounts([]byte(tt.give)); err != nil {
				t.Fatalf("addCounts() = %v", err)
			}
			if !maps.Equal(res.Codes, tt.want) {
				t.Errorf("Codes = %v, want %v", res.Codes, tt.want)
			}
		})
	}
}

func TestAddErrorCodes(t *testing.T) {
	res := Result{Codes: map[int]int{}}
	res.addErrorCodes([]byte("t0;e0;\nt1;e1;404,503,404,\nt2;e2;180,\nt3;e3;\n"))
	if want := map[int]int{404: 2, 503: 1}; !maps.Equal(res.Codes, want) {
		t.Errorf("Codes = %v, want %v", res.Codes, want)
	}
}

func TestFailedFraction(t *testing.T) {
	tests := []struct {
		name string
		give Result
		want float64
	}{
		{name: "no calls", give: Result{}, want: 1},
		{name: "all successful", give: Result{Created: 100, Successful: 100}, want: 0},
		{name: "incomplete count as failed", give: Result{Created: 1000, Successful: 990, Failed: 4}, want: 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.FailedFraction(); got != tt.want {
				t.Errorf("FailedFraction() = %v, want %v", got, tt.want)
			}
		})
	}
}
