package diskimage

import (
	"errors"
	"fmt"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Arch is what differs between the images of two CPU architectures.
type Arch struct {
	Name        string   // GOARCH
	Compatible  string   // hardware family written into bundles and the root
	RootType    gpt.Type // Discoverable Partitions Specification root type
	BootEFI     string   // removable-media boot path the firmware looks for
	SystemdBoot string   // file name in Debian's systemd-boot-efi package
	Console     string   // serial console of the qemu machine and most boards
	ExtraArgs   string   // further kernel arguments
	ESPSize     int64    // room for two kernels and the boot loader
	RootSize    int64    // each of root-a and root-b
	DataSize    int64
}

const mib = 1 << 20

// Arches are the supported targets. Each ESP holds systemd-boot and one
// kernel per slot (an update writes the other slot's next to the running
// one): Build refuses a kernel that leaves no room for a second one 25 %
// larger (ESPNeed). The amd64 bzImage is 10.3 MB; the arm64 kernel is an
// uncompressed Image (arm64 has no self-decompressing format that
// systemd-boot loads) of 26.3 MB, images/kernel's (gokrazy's was 59 MB
// and needed 192 MiB).
var Arches = map[string]Arch{
	"amd64": {
		Name:        "amd64",
		Compatible:  "umedge-amd64-v1",
		RootType:    gpt.LinuxRootX86_64,
		BootEFI:     "EFI/BOOT/BOOTX64.EFI",
		SystemdBoot: "systemd-bootx64.efi",
		Console:     "ttyS0",
		// A slow or loaded hypervisor (qemu TCG on a busy host) fails the
		// kernel's IO-APIC timer check and panics; cloud images pass the
		// same flag. Real boards route the timer correctly either way.
		ExtraArgs: "no_timer_check",
		ESPSize:   96 * mib,
		RootSize:  192 * mib,
		DataSize:  256 * mib,
	},
	"arm64": {
		Name:        "arm64",
		Compatible:  "umedge-arm64-v1",
		RootType:    gpt.LinuxRootArm64,
		BootEFI:     "EFI/BOOT/BOOTAA64.EFI",
		SystemdBoot: "systemd-bootaa64.efi",
		Console:     "ttyAMA0",
		ESPSize:     96 * mib,
		RootSize:    192 * mib,
		DataSize:    256 * mib,
	},
}

var errUnknownArch = errors.New("diskimage: unknown arch")

// espSlack is what the ESP's FAT32 tables, directories and boot entries
// take beyond the files: 96 MiB FAT32 with 512-byte clusters spends
// 1.5 MiB on its two FATs.
const espSlack = 4 * mib

// ESPNeed is the ESP size an A/B pair of kernels of kernel bytes needs
// with the boot loader: the running slot's kernel, the other slot's one
// 25 % larger (a later release may grow), the loader and espSlack.
func ESPNeed(kernel, bootloader int64) int64 {
	return kernel + kernel*5/4 + bootloader + espSlack
}

// ArchNamed returns the Arch called name.
func ArchNamed(name string) (Arch, error) {
	a, ok := Arches[name]
	if !ok {
		return Arch{}, fmt.Errorf("%w %q (amd64 or arm64)", errUnknownArch, name)
	}
	return a, nil
}

// Cmdline is the kernel command line of slot on a.
func (a Arch) Cmdline(slot string) string {
	args := "console=" + a.Console + " quiet ro rootfstype=squashfs rootwait init=/init panic=5"
	if a.ExtraArgs != "" {
		args += " " + a.ExtraArgs
	}
	return args + " root=PARTLABEL=root-" + slot + " appliance.slot=" + slot
}
