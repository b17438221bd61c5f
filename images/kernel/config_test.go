package kernel

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// required are the kernel options the images depend on: without any of
// them an image does not boot, update or bless, or a feature of the
// config (VLANs, the firewall, the media fast path and its JIT, the XDP
// send path) fails on the box.
var required = append(bootRequired,
	"CONFIG_IKCONFIG", "CONFIG_EXT4_FS", "CONFIG_NF_TABLES_INET", "CONFIG_NFT_CT",
	"CONFIG_VLAN_8021Q", "CONFIG_NET_SCH_INGRESS", "CONFIG_NET_CLS_BPF", "CONFIG_NET_XGRESS",
	"CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_BPF_JIT_ALWAYS_ON", "CONFIG_WATCHDOG", "CONFIG_RTC_CLASS",
	// The media engine's XDP send path (media.send_path = "xdp").
	"CONFIG_XDP_SOCKETS",
	// DHCP (insomniacslk/dhcp's nclient4 sends and receives on an
	// AF_PACKET socket), the plugins (go-plugin talks over Unix sockets),
	// the inet firewall's and the fast path's IPv6 half.
	"CONFIG_PACKET", "CONFIG_UNIX", "CONFIG_IPV6", "CONFIG_NF_CONNTRACK",
)

// bootRequired are those of them without which an image does not boot,
// update or bless.
var bootRequired = []string{
	"CONFIG_SQUASHFS", "CONFIG_SQUASHFS_ZLIB", "CONFIG_VFAT_FS", "CONFIG_EFIVAR_FS", "CONFIG_EFI_STUB",
	"CONFIG_EFI_PARTITION", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET", "CONFIG_DEVTMPFS",
	"CONFIG_BLK_DEV_INITRD", "CONFIG_RD_LZ4", "CONFIG_NF_TABLES", "CONFIG_HW_RANDOM_VIRTIO",
}

// builtArches are the arches whose kernel images/kernel builds and
// commits: all the images'.
var builtArches = []string{"amd64", "arm64"}

// absent are options the images' kernel must not have: modules (the
// image carries none) and ftrace (its trace_eval_sync cost ~1 s of boot
// under qemu TCG).
var absent = []string{"CONFIG_MODULES", "CONFIG_FTRACE"}

// TestKernelConfig reads the configuration embedded in each committed
// kernel (CONFIG_IKCONFIG) and checks the options the images need, so
// that a rebuild that drops one fails here rather than at boot.
func TestKernelConfig(t *testing.T) {
	for _, arch := range builtArches {
		t.Run(arch, func(t *testing.T) {
			cfg := kernelConfig(t, filepath.Join(arch, "vmlinuz"))
			for _, opt := range required {
				if !strings.Contains(cfg, "\n"+opt+"=y\n") {
					t.Errorf("%s: %s is not built in", arch, opt)
				}
			}
			for _, opt := range absent {
				if strings.Contains(cfg, "\n"+opt+"=") {
					t.Errorf("%s: %s is set", arch, opt)
				}
			}
		})
	}
}

// TestCommittedKernel checks that what is committed under <arch>/ is one
// build: the vmlinuz matches its sha256 file and its embedded
// configuration is <arch>/config (TestCommittedConfig checks that against
// the fragments).
func TestCommittedKernel(t *testing.T) {
	for _, arch := range builtArches {
		t.Run(arch, func(t *testing.T) {
			img, err := os.ReadFile(filepath.Join(arch, "vmlinuz"))
			if err != nil {
				t.Fatal(err)
			}
			sum, err := os.ReadFile(filepath.Join(arch, "vmlinuz.sha256"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fmt.Sprintf("%x  vmlinuz\n", sha256.Sum256(img)), string(sum); got != want {
				t.Errorf("%s/vmlinuz.sha256 is %q, the file's sum is %q", arch, want, got)
			}
			committed, err := os.ReadFile(filepath.Join(arch, "config"))
			if err != nil {
				t.Fatal(err)
			}
			if embedded := kernelConfig(t, filepath.Join(arch, "vmlinuz")); embedded != "\n"+string(committed) {
				t.Errorf("%s/config is not the configuration %s/vmlinuz was built with (make kernel ARCH=%s)", arch, arch, arch)
			}
		})
	}
}

// TestCommittedConfig checks every arch's committed <arch>/config, built
// or not yet (arm64), against the fragments build.sh merges: every line
// of umedge.config and <arch>/umedge.config is in it (a fragment edited
// without `make kernel` fails). A committed <arch>/vmlinuz must be in
// builtArches, so that TestKernelConfig and TestCommittedKernel read it.
func TestCommittedConfig(t *testing.T) {
	common := fragment(t, "umedge.config")
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(arch, "vmlinuz")); err == nil && !slices.Contains(builtArches, arch) {
				t.Errorf("%s/vmlinuz is committed but %s is not in builtArches: its configuration goes unchecked", arch, arch)
			}
			committed, err := os.ReadFile(filepath.Join(arch, "config"))
			if err != nil {
				t.Fatal(err)
			}
			if msg := fragmentsMissing(string(committed), append(common, fragment(t, filepath.Join(arch, "umedge.config"))...)); len(msg) > 0 {
				t.Errorf("%s/config: %s", arch, strings.Join(msg, "; "))
			}
		})
	}
}

// fragmentsMissing returns, for a full .config, each fragment line it
// does not honour: a CONFIG_X=v it lacks, a "# CONFIG_X is not set" it sets.
func fragmentsMissing(config string, lines []string) []string {
	set := "\n" + config
	var out []string
	for _, line := range lines {
		if sym, ok := strings.CutPrefix(line, "# "); ok {
			sym, _, _ = strings.Cut(sym, " ")
			if strings.Contains(set, "\n"+sym+"=") {
				out = append(out, "sets "+sym+", which the fragments turn off")
			}
		} else if !strings.Contains(set, "\n"+line+"\n") {
			out = append(out, "lacks the fragments' "+line)
		}
	}
	return out
}

// TestFragmentsMissing feeds fragmentsMissing the mismatches it is there
// to catch: a line left out, a value changed, an off symbol set, and a
// symbol that only shares a prefix with a fragment's.
func TestFragmentsMissing(t *testing.T) {
	lines := []string{"CONFIG_A=y", "CONFIG_B=\"x\"", "# CONFIG_C is not set"}
	if got := fragmentsMissing("CONFIG_A=y\nCONFIG_B=\"x\"\n# CONFIG_C is not set\nCONFIG_CC=y\n", lines); len(got) != 0 {
		t.Errorf("a config that honours the fragments: %v", got)
	}
	for _, c := range []struct{ config, want string }{
		{"CONFIG_B=\"x\"\n", "lacks the fragments' CONFIG_A=y"},
		{"CONFIG_A=m\nCONFIG_B=\"x\"\n", "lacks the fragments' CONFIG_A=y"},
		{"CONFIG_AB=y\nCONFIG_B=\"x\"\n", "lacks the fragments' CONFIG_A=y"},
		{"CONFIG_A=y\nCONFIG_B=\"x\"\nCONFIG_C=y\n", "sets CONFIG_C, which the fragments turn off"},
	} {
		if got := fragmentsMissing(c.config, lines); !slices.Equal(got, []string{c.want}) {
			t.Errorf("config %q: %q, want [%q]", c.config, got, c.want)
		}
	}
}

// fragment returns the settings of a config fragment: CONFIG_X=v and
// "# CONFIG_X is not set" lines.
func fragment(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "CONFIG_") || strings.HasPrefix(line, "# CONFIG_") && strings.HasSuffix(line, " is not set") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no settings", file)
	}
	return out
}

func kernelConfig(t *testing.T, file string) string {
	t.Helper()
	img, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = kernelOf(img); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	i := bytes.Index(img, []byte("IKCFG_ST"))
	if i < 0 {
		t.Fatal("kernel has no embedded config (CONFIG_IKCONFIG)")
	}
	zr, err := gzip.NewReader(bytes.NewReader(img[i+len("IKCFG_ST"):]))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	cfg, err := io.ReadAll(zr)
	if err != nil && len(cfg) == 0 {
		t.Fatal(err)
	}
	return "\n" + string(cfg)
}

var (
	errBzImage      = errors.New("bzImage header")
	errCompression  = errors.New("bzImage payload: unknown compression")
	errNoKernelData = errors.New("bzImage payload decodes to nothing")
)

// kernelOf returns the kernel inside img: an x86 bzImage's payload
// (found by its boot protocol header, the "HdrS" at 0x202) decompressed,
// the image itself otherwise (the arm64 Image is plain).
func kernelOf(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return img, nil
	}
	// setup_sects at 0x1f1 (0 means 4), payload_offset and payload_length
	// at 0x248 and 0x24c, counted from the protected-mode code, which
	// starts after the setup sectors and the boot sector.
	setup := int(img[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := (setup+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if n < 4 || off+n > len(img) {
		return nil, fmt.Errorf("%w: payload %d+%d outside the file's %d bytes", errBzImage, off, n, len(img))
	}
	payload := img[off : off+n]
	var r io.Reader
	switch {
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}): // zstd
		zr, err := zstd.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}): // LZ4, legacy frame (lz4 -l)
		r = lz4.NewReader(bytes.NewReader(payload))
	default:
		return nil, fmt.Errorf("%w (starts % x)", errCompression, payload[:4])
	}
	// The build appends the uncompressed size to the stream, which the
	// decoders read as a broken frame: what decoded before the error is
	// the kernel.
	kernel, _ := io.ReadAll(r)
	if len(kernel) == 0 {
		return nil, errNoKernelData
	}
	return kernel, nil
}

// TestKernelOf builds bzImages around an LZ4 and a zstd payload, each
// followed by the size word the kernel's build appends, and checks that
// kernelOf finds and inflates them, and refuses an unknown compression
// and a header that points outside the file.
func TestKernelOf(t *testing.T) {
	kernel := bytes.Repeat([]byte("IKCFG_ST kernel text "), 4096)
	var lz bytes.Buffer
	lw := lz4.NewWriter(&lz)
	if err := lw.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := lw.Write(kernel); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zs := zw.EncodeAll(kernel, nil)
	bz := func(payload []byte, length int) []byte {
		img := make([]byte, 5*512+0x100)
		copy(img[0x202:], "HdrS")
		img[0x1f1] = 4
		binary.LittleEndian.PutUint32(img[0x248:], 0x100)
		binary.LittleEndian.PutUint32(img[0x24c:], uint32(length))
		img = append(img, payload...)
		return binary.LittleEndian.AppendUint32(img, uint32(len(kernel)))
	}
	for name, payload := range map[string][]byte{"lz4": lz.Bytes(), "zstd": zs} {
		got, err := kernelOf(bz(payload, len(payload)+4))
		if err != nil || !bytes.Equal(got, kernel) {
			t.Errorf("%s: %d bytes, %v; want the %d-byte kernel", name, len(got), err, len(kernel))
		}
	}
	if _, err := kernelOf(bz(kernel, len(kernel)+4)); !errors.Is(err, errCompression) {
		t.Errorf("uncompressed payload: %v, want %v", err, errCompression)
	}
	if _, err := kernelOf(bz(zs, 1<<20)); !errors.Is(err, errBzImage) {
		t.Errorf("payload past the end: %v, want %v", err, errBzImage)
	}
	if got, err := kernelOf(kernel); err != nil || !bytes.Equal(got, kernel) {
		t.Errorf("a plain Image: %d bytes, %v; want it unchanged", len(got), err)
	}
}
