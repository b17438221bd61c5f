package qemu

import (
	"strings"
	"testing"
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
