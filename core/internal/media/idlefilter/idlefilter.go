// Package idlefilter is the media engine's socket filter for idle port
// pairs: an eBPF program on every media socket that drops the datagrams
// sent to a port marked parked, the marks being words of memory the
// process shares with the kernel, so that parking and unparking a port is
// a store, not a system call.
//
// The program (BPF_PROG_TYPE_SOCKET_FILTER, written with cilium/ebpf's asm
// package, so nothing needs a compiler) runs in the kernel's UDP receive
// path (udp_queue_rcv_one_skb, udpv6_queue_rcv_one_skb) before the
// datagram is queued, where skb->data points at the UDP header
// (TestFilterReadsTheUDPDestinationPort): it reads the destination port,
// indexes a BPF_F_MMAPABLE array of one u32 per port of the engine's
// range (index port − PortMin), and drops the datagram (returns 0) when
// the word is not zero, counting it in a per-CPU counter; any other
// datagram passes whole. The array is the one value of a one-entry array
// map, which the program addresses directly (no lookup call) and the
// process maps densely: eleven instructions and the port's load on the
// path of a datagram that passes, some 10 ns (BenchmarkFilter).
package idlefilter

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrUnavailable means the filter cannot run here: no permission to load
// BPF programs, a kernel without mmapable arrays, a verifier that refuses
// the program, or a socket that does not take it. Wrapped with the reason.
var ErrUnavailable = errors.New("idlefilter: unavailable")

// ErrClosed means the filter was closed: a socket opened after it does
// not get it.
var ErrClosed = errors.New("idlefilter: closed")

// markSize is the size of a port's mark: the u32 of index i is at 4i of
// the map's one value (TestMemoryLayout).
const markSize = 4

// Filter is the loaded program and its two maps: the parked marks, mapped
// into the process, and the drop counter.
type Filter struct {
	prog   *ebpf.Program
	parked *ebpf.Map
	drops  *ebpf.Map
	mem    []byte // the marks: parked's memory, unmapped only when f is unreachable
	min    int    // PortMin: the port of index 0
	n      int    // ports in the range

	mu     sync.RWMutex // held shared by Attach and Drops, so that Close never closes a descriptor they use
	closed bool
	final  uint64 // Drops when closed
}

// Load builds and loads the program for the ports portMin..portMax, maps
// its marks and checks that a UDP socket takes it; errors wrap
// ErrUnavailable.
func Load(portMin, portMax int) (*Filter, error) {
	if portMin < 1 || portMax > 0xffff || portMax < portMin {
		return nil, fmt.Errorf("%w: port range %d-%d", ErrUnavailable, portMin, portMax)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: remove memlock limit: %w", ErrUnavailable, err)
	}
	f := &Filter{min: portMin, n: portMax - portMin + 1}
	var err error
	// One entry holding every mark: a direct value address for the
	// program (BPF_PSEUDO_MAP_VALUE takes a one-entry array), a dense
	// mapping for the process (an array of n u32 entries would have
	// them 8 bytes apart).
	f.parked, err = ebpf.NewMap(&ebpf.MapSpec{Name: "umedge_parked", Type: ebpf.Array, KeySize: 4,
		ValueSize: uint32(f.n * markSize), MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE}) //nolint:gosec // at most 256 KiB
	if err != nil {
		return nil, fmt.Errorf("%w: create the parked ports' array: %w", ErrUnavailable, err)
	}
	f.drops, err = ebpf.NewMap(&ebpf.MapSpec{Name: "umedge_idledrop", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		_ = f.parked.Close()
		return nil, fmt.Errorf("%w: create the drop counter: %w", ErrUnavailable, err)
	}
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "umedge_idle", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: program(portMin, f.n, f.parked.FD(), f.drops.FD())})
	if err != nil {
		f.closeFDs()
		if ve := (*ebpf.VerifierError)(nil); errors.As(err, &ve) {
			return nil, fmt.Errorf("%w: the verifier refused the program: %w", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("%w: load program: %w", ErrUnavailable, err)
	}
	size := (f.n*markSize + os.Getpagesize() - 1) / os.Getpagesize() * os.Getpagesize()
	// Not ebpf.Map.Memory: it offers ReadAt/WriteAt (a copy), no word
	// to store to atomically.
	f.mem, err = unix.Mmap(f.parked.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.closeFDs()
		return nil, fmt.Errorf("%w: map the parked ports' array: %w", ErrUnavailable, err)
	}
	// Unmapped when nothing can store into it any more: a Park racing
	// the engine's Close must not find its memory gone. The mapping keeps
	// the array alive in the kernel until then (4 bytes a port).
	runtime.AddCleanup(f, func(b []byte) { _ = unix.Munmap(b) }, f.mem)
	if err := f.probe(); err != nil {
		f.closeFDs()
		return nil, err
	}
	return f, nil
}

// program is the filter for a range of n ports starting at portMin, with
// the parked array and the drop counter at the given descriptors.
func program(portMin, n int, parked, drops int) asm.Instructions {
	return asm.Instructions{
		// LD_ABS reads the skb in R6, relative to skb->data: the UDP
		// header here. R0 = the destination port, in host order.
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadAbs(2, asm.Half),
		// The index, in 32 bits: a port below the range wraps to one
		// past its end.
		asm.Add.Imm32(asm.R0, int32(-portMin)), //nolint:gosec // a port
		asm.JGE.Imm(asm.R0, int32(n), "pass"),  //nolint:gosec // at most 65,535
		asm.LSh.Imm(asm.R0, 2),
		asm.LoadMapValue(asm.R1, parked, 0),
		asm.Add.Reg(asm.R1, asm.R0),
		asm.LoadMem(asm.R1, asm.R1, 0, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "pass"),
		// Parked: count and drop.
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, drops),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord), // this CPU's counter: atomic, never contended
		asm.Mov.Imm(asm.R0, 0).WithSymbol("drop"),
		asm.Return(),
		// A socket filter returns how many bytes to keep: all.
		asm.Mov.Imm32(asm.R0, -1).WithSymbol("pass"),
		asm.Return(),
	}
}

// probe attaches the program to a socket of each family the kernel has
// (IPv6 may be absent), so that a kernel or a policy refusing
// SO_ATTACH_BPF shows at load, not at the first call.
func (f *Filter) probe() error {
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			if family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			return fmt.Errorf("%w: probe socket: %w", ErrUnavailable, err)
		}
		err = f.attach(fd)
		_ = unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// Program is the loaded program, for tests.
func (f *Filter) Program() *ebpf.Program { return f.prog }

// Attach puts the filter on the UDP socket fd; errors wrap ErrUnavailable,
// or are ErrClosed.
func (f *Filter) Attach(fd int) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return ErrClosed
	}
	return f.attach(fd)
}

func (f *Filter) attach(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, f.prog.FD()); err != nil {
		return fmt.Errorf("%w: SO_ATTACH_BPF: %w", ErrUnavailable, err)
	}
	return nil
}

// word is the mark of port, nil outside the range.
func (f *Filter) word(port int) *uint32 {
	i := port - f.min
	if i < 0 || i >= f.n {
		return nil
	}
	return (*uint32)(unsafe.Pointer(&f.mem[i*markSize])) //nolint:gosec // an aligned u32 of the map's memory
}

// Park marks port parked: from the store on, the program drops what is
// sent to it (a datagram the kernel is filtering on another CPU at that
// moment may still pass). No system call. A port outside the range is
// ignored.
func (f *Filter) Park(port int) {
	if w := f.word(port); w != nil {
		atomic.StoreUint32(w, 1)
	}
}

// Unpark clears port's mark: datagrams to it pass again.
func (f *Filter) Unpark(port int) {
	if w := f.word(port); w != nil {
		atomic.StoreUint32(w, 0)
	}
}

// Parked reports whether port is marked parked.
func (f *Filter) Parked(port int) bool {
	w := f.word(port)
	return w != nil && atomic.LoadUint32(w) != 0
}

// Drops is the number of datagrams the program dropped at parked ports
// since it was loaded, summed over the CPUs' counters: one system call.
func (f *Filter) Drops() (uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return f.final, nil
	}
	return f.readDrops()
}

func (f *Filter) readDrops() (uint64, error) {
	var per []uint64
	if err := f.drops.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("idlefilter: read the drop counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close unloads the program once the sockets that carry it are closed
// (each holds a reference) and keeps the last drop count for Drops. The
// marks stay mapped, and Park and Unpark harmless, until f is unreachable.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.final, _ = f.readDrops()
	f.closed = true
	f.closeFDs()
	return nil
}

func (f *Filter) closeFDs() {
	if f.prog != nil {
		_ = f.prog.Close()
	}
	_ = f.drops.Close()
	_ = f.parked.Close()
}
