package media

import "testing"

func TestPortPool(t *testing.T) {
	p, err := newPortPool(40000, 40006) // pairs 40000, 40002, 40004; 40006 has no RTCP partner
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		port, ok := p.get()
		if !ok {
			break
		}
		got = append(got, port)
	}
	if want := []int{40000, 40002, 40004}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("pairs handed out = %v, want %v (even RTP, RTCP inside the range)", got, want)
	}
	if inUse, free := p.counts(); inUse != 3 || free != 0 {
		t.Errorf("counts = %d in use, %d free, want 3, 0", inUse, free)
	}
	p.put(40002)
	p.put(40000)
	if port, _ := p.get(); port != 40002 {
		t.Errorf("after returning 40002 then 40000, get = %d, want 40002 (FIFO reuse)", port)
	}
}

func TestPortPoolRejectsBadRange(t *testing.T) {
	for _, r := range [][2]int{{40001, 40010}, {40000, 40000}, {40000, 70000}} {
		if _, err := newPortPool(r[0], r[1]); err == nil {
			t.Errorf("newPortPool(%d, %d) = nil error", r[0], r[1])
		}
	}
}

func TestPortPoolReturnOfForeignPortPanics(t *testing.T) {
	p, _ := newPortPool(40000, 40003)
	p.get()
	defer func() {
		if recover() == nil {
			t.Error("put(40001) did not panic")
		}
	}()
	p.put(40001)
}
