// Command boottime measures the appliance's boot under qemu the way the
// boot tests do: power-on to the first SIP OPTIONS answered through the
// forwarded port (UDP, one probe every 100 ms), as host wall time and as
// the CPU time qemu used until then, which depends much less on what else
// the host runs. Each console line is printed with the host time it came
// at, so a slow phase can be found:
//
//	boottime -arch amd64 -kernel vmlinuz -initramfs bin/amd64/initramfs.cpio.lz4 -n 3
//	boottime -arch amd64 -mode uefi -image bin/amd64/umedge.img -n 1
//
// A UEFI image is copied before each boot (the VM writes to it). -mark
// also reports when the first console line matching a regular expression
// came, e.g. the kernel's first line (shown with loglevel=6 or more):
//
//	boottime -append loglevel=6 -mark 'Linux version' -n 3 -q …
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/umedge/umedge/images/internal/qemu"
	"github.com/umedge/umedge/images/internal/sipprobe"
)

func main() {
	var c qemu.Config
	var mode string
	var n int
	var quiet bool
	var timeout time.Duration
	flag.StringVar(&c.Arch, "arch", "amd64", "amd64 or arm64")
	flag.StringVar(&mode, "mode", "kernel", "kernel (kernel + initramfs) or uefi (disk image)")
	flag.StringVar(&c.Kernel, "kernel", "", "kernel (kernel mode)")
	flag.StringVar(&c.Initramfs, "initramfs", "", "initramfs (kernel mode)")
	flag.StringVar(&c.Image, "image", "", "disk image (uefi mode); copied before each boot")
	flag.StringVar(&c.Append, "append", "", "further kernel arguments (kernel mode)")
	var extra string
	flag.StringVar(&extra, "qemu-args", "", "further qemu arguments, space-separated (e.g. \"-icount shift=0,sleep=off\")")
	flag.IntVar(&n, "n", 1, "boots")
	flag.BoolVar(&quiet, "q", false, "print only the result of each boot, not the console")
	flag.DurationVar(&timeout, "timeout", 3*time.Minute, "give a boot up after")
	var markExpr string
	flag.StringVar(&markExpr, "mark", "", "also report when the first console line matching this regular expression came")
	flag.Parse()
	var mark *regexp.Regexp
	if markExpr != "" {
		var err error
		if mark, err = regexp.Compile(markExpr); err != nil {
			fmt.Fprintln(os.Stderr, "boottime: -mark:", err)
			os.Exit(2)
		}
	}
	c.Mode = qemu.Mode(mode)
	c.Extra = strings.Fields(extra)
	for i := range n {
		if err := once(c, i, quiet, timeout, mark); err != nil {
			fmt.Fprintln(os.Stderr, "boottime:", err)
			os.Exit(1)
		}
	}
}

var (
	errNoAnswer = errors.New("no SIP answer")
	errExited   = errors.New("qemu exited before SIP answered")
)

func once(c qemu.Config, i int, quiet bool, timeout time.Duration, mark *regexp.Regexp) error {
	port, err := qemu.FreePort()
	if err != nil {
		return err
	}
	c.SIPPort = port
	if c.Mode == qemu.ModeUEFI {
		dir, err := os.MkdirTemp("", "boottime")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		img := filepath.Join(dir, "disk.img")
		if out, err := exec.Command("cp", "--sparse=always", c.Image, img).CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %w: %s", c.Image, err, out)
		}
		c.Image, c.Vars = img, filepath.Join(dir, "vars.fd")
	}
	console := io.Discard
	if !quiet {
		console = &stamped{w: os.Stdout, start: time.Now()}
	}
	vm, err := qemu.Start(c, console)
	if err != nil {
		return err
	}
	defer vm.Stop()
	if s, ok := console.(*stamped); ok {
		s.setStart(vm.Started)
	}
	marked := make(chan string, 1)
	if mark != nil {
		go func() {
			// WaitFor returns at once when qemu ends, so this ends with the VM.
			if _, _, err := vm.WaitFor(context.Background(), mark, 0); err == nil {
				marked <- fmt.Sprintf(", %q at %.2fs (qemu CPU %.2fs)", mark, time.Since(vm.Started).Seconds(), vm.CPUTime().Seconds())
			}
		}()
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := vm.Started.Add(timeout)
	for {
		if _, err := sipprobe.Options("udp", addr, 250*time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("boot %d: %w within %s", i, errNoAnswer, timeout)
		}
		select {
		case <-vm.Done():
			return fmt.Errorf("boot %d: %w", i, errExited)
		case <-time.After(100 * time.Millisecond):
		}
	}
	wall, cpu := time.Since(vm.Started), vm.CPUTime()
	load, _ := os.ReadFile("/proc/loadavg")
	var at string
	select {
	case at = <-marked:
	default:
		if mark != nil {
			at = fmt.Sprintf(", no line matched %q", mark)
		}
	}
	fmt.Printf("RESULT %s %s boot %d: power-on → SIP answered %.2fs, qemu CPU %.2fs%s, load %s\n",
		c.Arch, c.Mode, i, wall.Seconds(), cpu.Seconds(), at, strings.Join(strings.Fields(string(load))[:3], " "))
	return nil
}

// stamped writes each line with the host time since power-on.
type stamped struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (s *stamped) setStart(t time.Time) {
	s.mu.Lock()
	s.start = t
	s.mu.Unlock()
}

func (s *stamped) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "[%7.3f] %s", time.Since(s.start).Seconds(), p)
	return len(p), nil
}
