//go:build integration

package boottest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umedge/umedge/images/internal/frame"
	"github.com/umedge/umedge/images/internal/qemu"
	"github.com/umedge/umedge/images/modules"
)

// debianKernelMeta is the Debian package whose dependency is the current
// cloud kernel: a kernel with 802.1Q (8021q), TC-BPF and the virtio
// drivers as modules, for the tests of the init's module path (the images'
// own kernel, images/kernel, has everything built in).
// UMEDGE_DEBIAN_KERNEL names another (linux-image-amd64, the generic
// kernel with the drivers of real hardware) to measure it the same way.
var debianKernelMeta = map[string]string{"amd64": "linux-image-cloud-amd64"}

// debianKernel returns the vmlinuz and module directory of Debian's cloud
// kernel for arch, fetched with apt-get download and unpacked (not
// installed) into bin/debian-kernel/<arch>/<package> once; later runs,
// offline ones too, use what is there.
func debianKernel(t *testing.T, arch string) (vmlinuz, modDir string) {
	t.Helper()
	cache := filepath.Join(repoRoot, "bin/debian-kernel", arch)
	meta, pkg, err := debianKernelPackage(arch)
	resolved := filepath.Join(cache, meta+".resolved") // what meta stood for last time
	if err != nil {
		// No apt metadata: the package unpacked before will do.
		last, rerr := os.ReadFile(resolved)
		if rerr != nil {
			t.Skipf("no Debian kernel for %s: %v (apt-get update?)", arch, err)
		}
		pkg = strings.TrimSpace(string(last))
	}
	dir := filepath.Join(cache, pkg)
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		tmp, err := os.MkdirTemp(cache, ".fetch-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		if err := run(tmp, nil, "apt-get", "download", pkg); err != nil {
			t.Fatal(err)
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
		if len(debs) != 1 {
			t.Fatalf("apt-get download %s left %v", pkg, debs)
		}
		if err := run(tmp, nil, "dpkg-deb", "-x", debs[0], tmp+"/x"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp+"/x", dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(resolved, []byte(pkg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	vmlinuz = filepath.Join(dir, "boot", "vmlinuz-"+release)
	modDir = filepath.Join(dir, "lib/modules", release)
	for _, p := range []string{vmlinuz, modDir} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("Debian kernel package %s: %v", pkg, err)
		}
	}
	return vmlinuz, modDir
}

// debianKernelPackage resolves arch's meta package to the kernel package.
func debianKernelPackage(arch string) (meta, pkg string, err error) {
	meta, ok := debianKernelMeta[arch]
	if m := os.Getenv("UMEDGE_DEBIAN_KERNEL"); m != "" {
		meta, ok = m, true
	}
	if !ok {
		return "", "", fmt.Errorf("no Debian kernel package known for %s", arch)
	}
	out, err := output(repoRoot, "apt-cache", "depends", meta)
	if err != nil {
		return meta, "", fmt.Errorf("apt-cache depends %s: %w", meta, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return meta, dep, nil
		}
	}
	return meta, "", fmt.Errorf("apt-cache depends %s names no linux-image-* package:\n%s", meta, out)
}

// initramfsWith builds an initramfs of a's init, edged and plugins with
// cfg as the shipped config and, unless modDir is "", modules from that
// kernel module directory: names, or by default those mkimage picks.
func (a *artifacts) initramfsWith(t *testing.T, cfg, modDir string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "initramfs.cpio.lz4")
	args := []string{"-arch", a.arch, "-init", a.dir + "/init", "-edged", a.dir + "/edged",
		"-plugins", a.dir + "/plugins", "-trust", devTrust, "-config", cfg, "-initramfs", out}
	if modDir != "" {
		args = append(args, "-modules", modDir)
	}
	if len(names) > 0 {
		args = append(args, "-module-names", strings.Join(names, ","))
	}
	if err := run(repoRoot, nil, a.mkimage, args...); err != nil {
		t.Fatal(err)
	}
	return out
}

// The VLAN test's segment: the VM's edged on VLAN 100, the test its peer.
var (
	vlanID   = 100
	guestIP  = netip.MustParseAddr("10.0.100.2")
	peerIP   = netip.MustParseAddr("10.0.100.1")
	peerMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x01, 0x00}
	peerPort = uint16(5070)
)

// vlanConfig is the shipped config with SIP on a VLAN: eth0 untagged
// without an address, VLAN 100 on it with 10.0.100.2/24, SIP listening
// there only, no NTP; the firewall stays on.
func vlanConfig(dir string) (string, error) {
	data, err := os.ReadFile(shippedConfig)
	if err != nil {
		return "", err
	}
	s := string(data)
	for _, r := range []struct{ old, new string }{
		{ntpLine, "ntp_servers = []"},
		{`listen = ["::"]`, fmt.Sprintf(`listen = ["%s"]`, guestIP)},
		{"[network.interfaces.eth0]\ndhcp = true\n", fmt.Sprintf("[network.interfaces.eth0]\n[network.interfaces.voice]\nparent = \"eth0\"\nvlan = %d\naddresses = [\"%s/24\"]\n", vlanID, guestIP)},
	} {
		if !strings.Contains(s, r.old) {
			return "", fmt.Errorf("%s has no %q to change for the VLAN test; update boottest", shippedConfig, r.old)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	out := filepath.Join(dir, "umedge-vlan.toml")
	return out, os.WriteFile(out, []byte(s), 0o600)
}

// peer is the test's end of the VM's Ethernet segment: qemu's socket
// network sends every frame as one UDP datagram. It is the stations of
// stations, on VLAN vlan (0: untagged).
type peer struct {
	conn     *net.UDPConn
	qemu     *net.UDPAddr
	vlan     int
	stations map[netip.Addr]net.HardwareAddr
	frames   chan *frame.Frame
	mu       sync.Mutex // guards stations and arps
	arps     int        // ARP requests for the stations answered
}

func newPeer(t *testing.T, vlan int, stations map[netip.Addr]net.HardwareAddr) *peer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &peer{conn: conn, vlan: vlan, stations: stations, frames: make(chan *frame.Frame, 256)}
}

// startVM boots a's kernel with initramfs on p's segment (qemu's socket
// network, p the only other station) and starts serving p.
func (p *peer) startVM(t *testing.T, a *artifacts, initramfs, name string) *boot {
	t.Helper()
	p.qemu = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freePort(t)}
	vm, err := qemu.Start(qemu.Config{
		Arch: a.arch, Mode: qemu.ModeKernel, Kernel: a.kernel, Initramfs: initramfs, NoReboot: true,
		Netdev: fmt.Sprintf("socket,id=n0,udp=%s,localaddr=%s", p.conn.LocalAddr(), p.qemu),
	}, consoleLog(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Stop)
	go p.serve(t.Logf)
	return &boot{vm: vm}
}

func (p *peer) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.conn.WriteToUDP(b, p.qemu); err != nil {
		t.Fatalf("send a frame to qemu: %v", err)
	}
}

// station is the MAC of the station at ip, nil if there is none.
func (p *peer) station(ip netip.Addr) net.HardwareAddr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stations[ip]
}

// move gives the station at ip another MAC (a failover to a standby box).
func (p *peer) move(ip netip.Addr, mac net.HardwareAddr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stations[ip] = mac
}

// serve reads the VM's frames, answers its ARP requests for the stations
// on p's VLAN (the way back for its answers), and passes every frame on.
func (p *peer) serve(logf func(string, ...any)) {
	buf := make([]byte, 65536)
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			close(p.frames)
			return
		}
		f, err := frame.Parse(bytes.Clone(buf[:n]))
		if err != nil {
			logf("frame from the VM not understood: %v", err)
			continue
		}
		if a := f.ARP; a != nil && a.Op == frame.ARPRequest && p.station(a.TargetIP) != nil && f.VLAN == p.vlan {
			reply := frame.EncodeARP(p.vlan, frame.ARP{Op: frame.ARPReply, SenderMAC: p.station(a.TargetIP), SenderIP: a.TargetIP, TargetMAC: a.SenderMAC, TargetIP: a.SenderIP})
			if _, err := p.conn.WriteToUDP(reply, p.qemu); err == nil {
				p.mu.Lock()
				p.arps++
				p.mu.Unlock()
			}
		}
		select {
		case p.frames <- f:
		default: // the test is not looking; drop
		}
	}
}

// await returns the first frame match accepts, resending every 500 ms
// until timeout; nil if none came.
func (p *peer) await(t *testing.T, timeout time.Duration, resend func(), match func(*frame.Frame) bool) *frame.Frame {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	if resend != nil {
		resend()
	}
	for {
		select {
		case f, ok := <-p.frames:
			if !ok {
				return nil
			}
			if match(f) {
				return f
			}
		case <-tick.C:
			if resend != nil {
				resend()
			}
		case <-deadline:
			return nil
		}
	}
}

func optionsRequest(callID string) []byte {
	return fmt.Appendf(nil, "OPTIONS sip:%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s:%[3]d;branch=z9hG4bK-%[4]s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:probe@umedge.invalid>;tag=%[4]s\r\n"+
		"To: <sip:%[1]s>\r\n"+
		"Call-ID: %[4]s\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n", guestIP, peerIP, peerPort, callID)
}

// TestIntegrationVLAN boots the kernel the images ship (images/kernel:
// 802.1Q built in) with the appliance's init, edged and a config whose SIP
// listens on VLAN 100 of eth0, on qemu's socket network with the test as
// the only other station; netcfg makes the VLAN. Over tagged frames the
// test resolves the VM's address by ARP (and answers the VM's ARP, if it
// asks), and gets a tagged 200 to a tagged OPTIONS; the same OPTIONS
// untagged to the VLAN's address gets no answer at all.
func TestIntegrationVLAN(t *testing.T) {
	const arch = "amd64"
	needQemu(t, arch)
	a := build(t, arch)
	dir := t.TempDir()
	cfg, err := vlanConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	initramfs := a.initramfsWith(t, cfg, "")

	p := newPeer(t, vlanID, map[netip.Addr]net.HardwareAddr{peerIP: peerMAC})
	b := p.startVM(t, a, initramfs, "vlan-"+arch)
	vm := b.vm
	ready := b.expect(t, `UMEDGE READY slot=`, 90*time.Second)
	readyAt := time.Since(vm.Started)
	t.Logf("images' kernel: READY %.1fs after power-on (host clock; load %s): %s", readyAt.Seconds(), loadAverage(), ready)
	fw := (&boot{vm: vm}).expect(t, `UMEDGE FIREWALL`, time.Second)
	if !strings.Contains(fw, "loaded") {
		t.Errorf("firewall: %s", fw)
	}
	// The shipped config's fast path, by TCX on the VLAN interface.
	t.Logf("fast path: %s", (&boot{vm: vm}).expect(t, `media fast path on`, time.Second))

	// Who has 10.0.100.2, on VLAN 100?
	var guestMAC net.HardwareAddr
	arpReq := frame.EncodeARP(vlanID, frame.ARP{Op: frame.ARPRequest, SenderMAC: peerMAC, SenderIP: peerIP, TargetIP: guestIP})
	f := p.await(t, 10*time.Second, func() { p.send(t, arpReq) }, func(f *frame.Frame) bool {
		return f.ARP != nil && f.ARP.Op == frame.ARPReply && f.ARP.SenderIP == guestIP
	})
	if f == nil {
		t.Fatalf("no ARP reply for %s on VLAN %d", guestIP, vlanID)
	}
	if f.VLAN != vlanID {
		t.Fatalf("ARP reply for %s came on VLAN %d, want %d", guestIP, f.VLAN, vlanID)
	}
	guestMAC = f.ARP.SenderMAC

	options := func(vlan int, callID string) []byte {
		return frame.EncodeUDP(guestMAC, peerMAC, vlan, frame.UDP{
			Src: netip.AddrPortFrom(peerIP, peerPort), Dst: netip.AddrPortFrom(guestIP, 5060), Payload: optionsRequest(callID),
		})
	}
	answerTo := func(callID string) func(*frame.Frame) bool {
		return func(f *frame.Frame) bool {
			return f.UDP != nil && f.UDP.Src == netip.AddrPortFrom(guestIP, 5060) && bytes.Contains(f.UDP.Payload, []byte("Call-ID: "+callID))
		}
	}

	tagged := options(vlanID, "vlan-tagged-1")
	f = p.await(t, 10*time.Second, func() { p.send(t, tagged) }, answerTo("vlan-tagged-1"))
	if f == nil {
		t.Fatalf("no answer to a tagged OPTIONS to %s:5060 on VLAN %d", guestIP, vlanID)
	}
	status, _, _ := strings.Cut(string(f.UDP.Payload), "\r\n")
	if f.VLAN != vlanID || !strings.HasPrefix(status, "SIP/2.0 200") || f.UDP.Dst != netip.AddrPortFrom(peerIP, peerPort) {
		t.Fatalf("answer on VLAN %d to %s: %q; want a 200 on VLAN %d to %s:%d", f.VLAN, f.UDP.Dst, status, vlanID, peerIP, peerPort)
	}
	p.mu.Lock()
	arps := p.arps
	p.mu.Unlock()
	t.Logf("tagged OPTIONS answered on VLAN %d: %s (VM's ARP requests for %s answered: %d)", f.VLAN, status, peerIP, arps)

	// The same request untagged: the VLAN's address is not reachable
	// from the untagged segment, so nothing answers.
	untagged := options(0, "vlan-untagged-1")
	if f := p.await(t, 3*time.Second, func() { p.send(t, untagged) }, answerTo("vlan-untagged-1")); f != nil {
		t.Fatalf("an untagged OPTIONS to %s got an answer on VLAN %d: %q", guestIP, f.VLAN, f.UDP.Payload)
	}
	// And a tagged one still does afterwards (the VM did not just stop).
	again := options(vlanID, "vlan-tagged-2")
	if f := p.await(t, 5*time.Second, func() { p.send(t, again) }, answerTo("vlan-tagged-2")); f == nil || f.VLAN != vlanID {
		t.Fatalf("no tagged answer after the untagged probe: %+v", f)
	}
}

// TestIntegrationVLANNeeds8021Q boots a kernel without 802.1Q (Debian's
// cloud kernel, its 8021q module left out of the initramfs) with the
// shipped config plus a VLAN on eth0: the console names the VLAN's key and
// the missing kernel support, and the rest comes up: eth0 by DHCP, SIP
// answered through the forwarded port, READY (edged's /healthz on the
// admin API answered).
func TestIntegrationVLANNeeds8021Q(t *testing.T) {
	const arch = "amd64"
	needQemu(t, arch)
	vmlinuz, modDir := debianKernel(t, arch)
	a := build(t, arch)
	dir := t.TempDir()
	data, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	const eth0 = "[network.interfaces.eth0]\ndhcp = true\n"
	s := string(data)
	if !strings.Contains(s, eth0) || !strings.Contains(s, ntpLine) {
		t.Fatalf("%s has no %q or %q to change; update boottest", shippedConfig, eth0, ntpLine)
	}
	s = strings.Replace(s, ntpLine, "ntp_servers = []", 1)
	s = strings.Replace(s, eth0, eth0+"[network.interfaces.voice]\nparent = \"eth0\"\nvlan = 100\naddresses = [\"10.0.100.2/24\"]\n", 1)
	cfg := filepath.Join(dir, "umedge.toml")
	if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	// Everything the image needs but 8021q.
	initramfs := a.initramfsWith(t, cfg, modDir, "virtio_pci", "virtio_net", "virtio_rng", "nf_tables", "nft_ct", "sch_ingress", "cls_bpf")
	b := startVM(t, qemu.Config{Arch: arch, Mode: qemu.ModeKernel, Kernel: vmlinuz, Initramfs: initramfs, NoReboot: true}, "vlan-no8021q-"+arch)
	ready := b.sipReady(t, 90*time.Second)
	line := (&boot{vm: b.vm}).expect(t, `UMEDGE NETWORK ERROR network\.interfaces\.voice: create VLAN 100 on eth0: this kernel lacks 802\.1Q VLAN support`, 5*time.Second)
	b.expect(t, `UMEDGE READY slot=`, 10*time.Second)
	t.Logf("Debian kernel %s without 8021q: SIP answered %.1fs after power-on with the VLAN refused: %s", filepath.Base(vmlinuz), ready.Seconds(), line)
}

// TestIntegrationBootDebianKernel is TestBootKernel's amd64 boot on
// Debian's cloud kernel instead of the images' own: the init loads virtio_pci,
// virtio_net, virtio_rng, nftables, sch_ingress and cls_bpf from the
// initramfs, and SIP answers through the forwarded port with the
// firewall loaded, a closed port dropped and the media fast path on
// (clsact: 6.1 has no TCX). The boot time it logs is the figure to hold against
// TestBootKernel's when choosing the kernel.
func TestIntegrationBootDebianKernel(t *testing.T) {
	const arch = "amd64"
	needQemu(t, arch)
	vmlinuz, modDir := debianKernel(t, arch)
	a := build(t, arch)
	dir := t.TempDir()
	cfg, err := testConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	initramfs := a.initramfsWith(t, cfg, modDir)
	if fi, err := os.Stat(initramfs); err == nil {
		t.Logf("initramfs with modules: %d bytes", fi.Size())
	}
	b := startVM(t, qemu.Config{Arch: arch, Mode: qemu.ModeKernel, Kernel: vmlinuz, Initramfs: initramfs, NoReboot: true}, "debian-"+arch)
	ready := b.sipReady(t, 90*time.Second)
	line := b.expect(t, `UMEDGE READY slot=`, 10*time.Second)
	all := &boot{vm: b.vm}
	t.Logf("modules: %s", all.expect(t, `kernel modules loaded`, time.Second))
	t.Logf("firewall: %s", (&boot{vm: b.vm}).expect(t, `UMEDGE FIREWALL loaded rules=[1-9]`, time.Second))
	t.Logf("fast path: %s", (&boot{vm: b.vm}).expect(t, `media fast path on`, time.Second))
	b.dropped(t)
	t.Logf("Debian kernel %s kernel+initramfs: SIP OPTIONS answered %.1fs after power-on (host clock); console: %s", filepath.Base(vmlinuz), ready.Seconds(), line)
}

// TestIntegrationFirewallWithoutNftables boots the Debian kernel with an
// nf_tables module the kernel refuses (its vermagic changed): nfnetlink,
// its dependency, is loaded, so the kernel takes the firewall's batch
// and answers all of it with one error. google/nftables waits for an
// acknowledgement per message; before firewall.Apply had a deadline the
// init hung there (seen with Debian's generic kernel). Now the console
// says UMEDGE FIREWALL ERROR and the box comes up.
func TestIntegrationFirewallWithoutNftables(t *testing.T) {
	const arch = "amd64"
	needQemu(t, arch)
	vmlinuz, modDir := debianKernel(t, arch)
	a := build(t, arch)
	cfg, err := testConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A module tree of what the image needs, nf_tables spoiled.
	broken := filepath.Join(t.TempDir(), filepath.Base(modDir))
	sel, err := modules.Select(modDir, []string{"virtio_pci", "virtio_net", "virtio_rng", "nf_tables", "nft_ct", "sch_ingress", "cls_bpf"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sel.Modules {
		data, err := os.ReadFile(filepath.Join(modDir, m.File))
		if err != nil {
			t.Fatal(err)
		}
		if m.Name == "nf_tables" {
			i := bytes.Index(data, []byte("vermagic="))
			if i < 0 {
				t.Fatal("nf_tables.ko has no vermagic")
			}
			data[i+len("vermagic=")] ^= 1 // "6.1.0-…" → "7.1.0-…": the kernel refuses it (ENOEXEC)
		}
		out := filepath.Join(broken, m.File)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	initramfs := a.initramfsWith(t, cfg, broken, sel.Names()...)
	b := startVM(t, qemu.Config{Arch: arch, Mode: qemu.ModeKernel, Kernel: vmlinuz, Initramfs: initramfs, NoReboot: true}, "debian-nonft-"+arch)
	line := b.expect(t, `UMEDGE FIREWALL`, 90*time.Second)
	if !strings.Contains(line, "UMEDGE FIREWALL ERROR") {
		t.Fatalf("firewall without nf_tables: %q, want UMEDGE FIREWALL ERROR", line)
	}
	(&boot{vm: b.vm}).expect(t, `kernel module.*nf_tables`, time.Second)
	ready := b.sipReady(t, 60*time.Second)
	b.expect(t, `UMEDGE READY slot=`, 10*time.Second)
	t.Logf("%s; SIP answered %.1fs after power-on", line, ready.Seconds())
}
