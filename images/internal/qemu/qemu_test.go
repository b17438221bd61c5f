package qemu

import (
	"strings"
	"testing"
	"time"
)

func TestCommand(t *testing.T) {
	tests := []struct {
		name    string
		give    Config
		want    []string // substrings of the joined command line
		wantErr string
	}{
		{name: "amd64 uefi", give: Config{Arch: "amd64", Mode: ModeUEFI, Image: "d.img", Vars: "v.fd", SIPPort: 15060, AdminPort: 19060},
			want: []string{"qemu-system-x86_64 -M q35", "OVMF_CODE_4M.fd", "file=v.fd", "if=virtio,format=raw,file=d.img",
				"hostfwd=udp:127.0.0.1:15060-:5060", "hostfwd=tcp:127.0.0.1:15060-:5060", "hostfwd=tcp:127.0.0.1:19060-:9060", "-accel tcg"}},
		{name: "arm64 kernel", give: Config{Arch: "arm64", Mode: ModeKernel, Kernel: "Image", Initramfs: "i.gz", SIPPort: 5060, NoReboot: true},
			want: []string{"qemu-system-aarch64 -M virt -cpu cortex-a57", "-kernel Image -initrd i.gz", "console=ttyAMA0", "-no-reboot"}},
		{name: "closed port", give: Config{Arch: "amd64", Mode: ModeKernel, Kernel: "k", Initramfs: "i", SIPPort: 15060, ClosedPort: 15070},
			want: []string{"hostfwd=tcp:127.0.0.1:15070-:1 ", "-nodefaults", "romfile="}},
		{name: "extra kernel and qemu arguments", give: Config{Arch: "amd64", Mode: ModeKernel, Kernel: "k", Initramfs: "i", SIPPort: 15060,
			Append: "loglevel=7", Extra: []string{"-icount", "shift=0"}},
			want: []string{"panic=-1 no_timer_check loglevel=7 -netdev", "virtio-rng-pci -icount shift=0"}},
		{name: "unknown arch", give: Config{Arch: "riscv64", Mode: ModeKernel}, wantErr: "unknown arch"},
		{name: "uefi without image", give: Config{Arch: "amd64", Mode: ModeUEFI}, wantErr: "needs an image"},
		{name: "kernel without initramfs", give: Config{Arch: "amd64", Mode: ModeKernel, Kernel: "k"}, wantErr: "needs a kernel and an initramfs"},
		{name: "unknown mode", give: Config{Arch: "amd64", Mode: "pxe"}, wantErr: "unknown mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := Command(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Command() = %v, want error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Join(args, " ")
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("command line lacks %q:\n%s", w, line)
				}
			}
			if tt.give.AdminPort == 0 && strings.Contains(line, ":9060") {
				t.Errorf("admin forwarded though not asked: %s", line)
			}
		})
	}
}

func TestCPUTimeOf(t *testing.T) {
	// utime 250 and stime 53 ticks: 3.03 s. The command name may hold
	// spaces and parentheses.
	stat := "4242 (qemu (x86) 7) S 1 4242 4242 0 -1 4194560 9116 0 0 0 250 53 0 0 20 0 3 0 1234 1000 100"
	if got, want := cpuTimeOf(stat), 3030*time.Millisecond; got != want {
		t.Errorf("cpuTimeOf = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 (qemu) S 1 2", "4242 qemu S 1 4242 4242 0 -1 4194560 9116 0 0 0 250 53"} {
		if got := cpuTimeOf(bad); got != 0 {
			t.Errorf("cpuTimeOf(%q) = %v, want 0", bad, got)
		}
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort() = %d, %v", p, err)
	}
}
