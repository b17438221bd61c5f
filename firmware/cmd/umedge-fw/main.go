// Command umedge-fw makes and checks signed firmware bundles on a host,
// and installs them into disk image files for tests:
//
//	umedge-fw keygen -out NAME                 writes NAME.key (keep offline) and NAME.pub
//	umedge-fw create -key K -compatible C -version N [-release R] -kernel F -root F -out B
//	umedge-fw inspect B                        prints the manifest (signature not checked)
//	umedge-fw verify -trust DIR -compatible C [-installed N] B
//	umedge-fw install-image -image IMG -trust DIR -compatible C B
//	umedge-fw status-image -image IMG          lists the boot entries of an image
//	umedge-fw boot-image -image IMG            does what systemd-boot does when it boots IMG
package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/bundle"
	"github.com/umedge/umedge/firmware/imagefile"
	"github.com/umedge/umedge/firmware/install"
	"github.com/umedge/umedge/firmware/keys"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "umedge-fw:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: umedge-fw keygen|create|inspect|verify|install-image|status-image|boot-image [flags]")

func run(args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	cmds := map[string]func([]string) error{
		"keygen": keygen, "create": create, "inspect": inspect, "verify": verify,
		"install-image": installImage, "status-image": statusImage, "boot-image": bootImage,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q\n%w", args[0], errUsage)
	}
	return cmd(args[1:])
}

func keygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	out := fs.String("out", "", "writes OUT.key and OUT.pub")
	comment := fs.String("comment", "", "comment line in both files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errKeygenUsage
	}
	pub, priv, err := keys.Generate()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".key", keys.MarshalPrivate(priv, *comment), 0o600); err != nil {
		return err
	}
	return os.WriteFile(*out+".pub", keys.MarshalPublic(pub, *comment), 0o644) //nolint:gosec // a public key is meant to be read by all
}

var (
	errKeygenUsage   = errors.New("keygen: -out is required")
	errCreateUsage   = errors.New("create: -key, -kernel, -root and -out are required")
	errInspectUsage  = errors.New("inspect: one bundle file")
	errPolicyUsage   = errors.New("-trust and -compatible are required")
	errNoTrusted     = errors.New("no *.pub keys")
	errVerifyUsage   = errors.New("verify: one bundle file")
	errInstallUsage  = errors.New("install-image: -image and one bundle file")
	errImageRequired = errors.New("-image is required")
)

func create(args []string) error {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	key := fs.String("key", "", "private key file")
	compat := fs.String("compatible", "", "hardware family, e.g. umedge-amd64-v1")
	version := fs.Uint64("version", 0, "monotonic version, above every installed one")
	release := fs.String("release", "", "human release name")
	kernel := fs.String("kernel", "", "kernel payload")
	root := fs.String("root", "", "squashfs root payload")
	out := fs.String("out", "", "bundle to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" || *kernel == "" || *root == "" || *out == "" {
		return errCreateUsage
	}
	priv, err := keys.ReadPrivate(*key)
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	m := bundle.Manifest{Compatible: *compat, Version: *version, Release: *release}
	src := []bundle.Source{{Name: bundle.PayloadKernel, Path: *kernel}, {Name: bundle.PayloadRoot, Path: *root}}
	if err := bundle.Create(f, m, src, priv); err != nil {
		_ = os.Remove(*out)
		return err
	}
	return f.Close()
}

func inspect(args []string) error {
	if len(args) != 1 {
		return errInspectUsage
	}
	m, err := bundle.Inspect(args[0])
	if err != nil {
		return err
	}
	return printJSON(m)
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

type policyFlags struct {
	trust, compat string
	installed     uint64
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.trust, "trust", "", "directory of trusted *.pub keys")
	fs.StringVar(&p.compat, "compatible", "", "this hardware's compatible string")
}

func (p *policyFlags) load() ([]ed25519.PublicKey, error) {
	if p.trust == "" || p.compat == "" {
		return nil, errPolicyUsage
	}
	trusted, err := keys.LoadTrusted(p.trust)
	if err != nil {
		return nil, err
	}
	if len(trusted) == 0 {
		return nil, fmt.Errorf("%w in %s", errNoTrusted, p.trust)
	}
	return trusted, nil
}

func verify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var p policyFlags
	p.register(fs)
	fs.Uint64Var(&p.installed, "installed", 0, "installed version; the bundle must be above it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errVerifyUsage
	}
	trusted, err := p.load()
	if err != nil {
		return err
	}
	m, err := bundle.Verify(fs.Arg(0), bundle.Policy{Trusted: trusted, Compatible: p.compat, Installed: p.installed})
	if err != nil {
		return err
	}
	fmt.Printf("ok: %s version %d (%s), %d payloads\n", m.Compatible, m.Version, m.Release, len(m.Payloads))
	return nil
}

func installImage(args []string) error {
	fs := flag.NewFlagSet("install-image", flag.ContinueOnError)
	var p policyFlags
	p.register(fs)
	image := fs.String("image", "", "disk image file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *image == "" {
		return errInstallUsage
	}
	trusted, err := p.load()
	if err != nil {
		return err
	}
	img, err := imagefile.Open(*image)
	if err != nil {
		return err
	}
	defer func() { _ = img.Close() }()
	t, err := img.Target()
	if err != nil {
		return err
	}
	t.Trusted, t.Compat = trusted, p.compat
	start := time.Now()
	res, err := install.Install(fs.Arg(0), t)
	if err != nil {
		return err
	}
	fmt.Printf("installed version %d into slot %s, armed %s (%.2fs)\n", res.Manifest.Version, res.Slot, res.Entry, time.Since(start).Seconds())
	return img.Close()
}

func openImage(args []string, name string) (*imagefile.Image, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	image := fs.String("image", "", "disk image file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *image == "" {
		return nil, fmt.Errorf("%s: %w", name, errImageRequired)
	}
	return imagefile.Open(*image)
}

func statusImage(args []string) error {
	img, err := openImage(args, "status-image")
	if err != nil {
		return err
	}
	defer func() { _ = img.Close() }()
	entries, err := bootslot.List(img.ESP)
	if err != nil {
		return err
	}
	for i, e := range entries {
		mark := " "
		if i == 0 && e.Bootable() {
			mark = "*"
		}
		fmt.Printf("%s %-20s version %-4d %s\n", mark, e.File, e.Entry.Version, e.Entry.Title)
	}
	return nil
}

func bootImage(args []string) error {
	img, err := openImage(args, "boot-image")
	if err != nil {
		return err
	}
	defer func() { _ = img.Close() }()
	e, err := bootslot.TryBoot(img.ESP)
	if err != nil {
		return err
	}
	fmt.Printf("boots %s (slot %s)\n", e.File, e.Name.Slot)
	return nil
}
