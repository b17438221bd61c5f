package kernel

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// required are the kernel options the images depend on: without any of
// them an image does not boot, update or bless.
var required = []string{
	"CONFIG_SQUASHFS", "CONFIG_SQUASHFS_ZLIB", "CONFIG_VFAT_FS", "CONFIG_EFIVAR_FS", "CONFIG_EFI_STUB",
	"CONFIG_EFI_PARTITION", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET", "CONFIG_DEVTMPFS",
	"CONFIG_BLK_DEV_INITRD", "CONFIG_RD_LZ4", "CONFIG_NF_TABLES", "CONFIG_HW_RANDOM_VIRTIO",
}

// TestPinnedKernelConfig reads the configuration embedded in each pinned
// kernel (CONFIG_IKCONFIG) and checks the options the images need, so that
// a bump of the pin that drops one fails here rather than at boot.
func TestPinnedKernelConfig(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			cfg := kernelConfig(t, "github.com/gokrazy/kernel."+arch)
			for _, opt := range required {
				if !strings.Contains(cfg, "\n"+opt+"=y\n") {
					t.Errorf("%s: %s is not built in", arch, opt)
				}
			}
		})
	}
}

func kernelConfig(t *testing.T, mod string) string {
	t.Helper()
	if out, err := exec.Command("go", "mod", "download", mod).CombinedOutput(); err != nil {
		t.Fatalf("go mod download %s: %v\n%s", mod, err, out)
	}
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", mod, err)
	}
	img, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	// An x86 bzImage carries the kernel zstd-compressed right after its
	// setup code; the arm64 Image is plain.
	if i := bytes.Index(img, []byte{0x28, 0xb5, 0x2f, 0xfd}); i >= 0 && i < 64<<10 {
		zr, err := zstd.NewReader(bytes.NewReader(img[i:]))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		// The compressed kernel is followed by other data; what decoded
		// before the error is the kernel.
		img, _ = io.ReadAll(zr)
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
