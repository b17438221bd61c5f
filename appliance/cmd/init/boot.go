package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/appliance/clock"
	"github.com/umedge/umedge/appliance/firewall"
	"github.com/umedge/umedge/appliance/firstboot"
	"github.com/umedge/umedge/appliance/health"
	"github.com/umedge/umedge/appliance/kmod"
	"github.com/umedge/umedge/appliance/logring"
	"github.com/umedge/umedge/appliance/netcfg"
	"github.com/umedge/umedge/appliance/supervise"
	"github.com/umedge/umedge/appliance/watchdog"
	"github.com/umedge/umedge/core/config"
)

// Log sizes: the ring holds the boot from its first line on; files
// rotate at 4 MiB, the current and the previous one kept.
const (
	ringBytes    = 1 << 20
	logFileBytes = 4 << 20
)

// box is the running appliance as init sees it.
type box struct {
	o       options
	out     io.Writer // console and ring: the lines the boot tests grep
	ring    *logring.Ring
	log     *slog.Logger
	slot    string
	net     *netcfg.Configurator
	mods    *kmod.Set // the kernel's modules; nil when it has everything built in
	edged   *supervise.Supervisor
	reaper  starter
	blesser blesser
	esp     bool // the ESP is mounted on o.espDir

	reloadMu sync.Mutex // one reload at a time: SIGHUP and the file watch may coincide

	mu      sync.Mutex
	cfg     *config.Config
	cfgFile string // what configLink points at
	stamp   fileStamp

	// diskless: the kernel was given no root= (an initramfs boot), so
	// there is no disk to wait for partitions on.
	diskless bool
	// rebootReq asks the main loop for a clean reboot (edged stopped, log
	// synced, file systems unmounted); the text says why.
	rebootReq chan string

	logErrSaid bool // the health loop told of a log file error
	// blessed: the booted slot is blessed (or there is no ESP); until
	// then the health loop tries on every passed check. Health loop only.
	blessed, blessErrSaid bool

	healthy   atomic.Bool
	reloaded  atomic.Int64 // unix nanoseconds of the last reload sent to edged
	lastGood  atomic.Int64 // unix nanoseconds of the last passed health check
	bootStart time.Time
}

// say prints a line on the console and into the log.
func (b *box) say(format string, args ...any) {
	fmt.Fprintf(b.out, format+"\n", args...)
}

func run(o options) {
	var early []error
	if o.mounts {
		early = mountEarly()
	}
	console := io.Writer(os.Stderr)
	if o.console != "" {
		if f, err := os.OpenFile(o.console, os.O_RDWR, 0); err == nil {
			for _, fd := range []int{0, 1, 2} {
				_ = unix.Dup3(int(f.Fd()), fd, 0)
			}
			console = f
		}
	}
	ring := logring.New(ringBytes, logFileBytes)
	out := io.MultiWriter(console, ring)
	b := &box{
		o: o, out: out, ring: ring, bootStart: time.Now(), blesser: defaultBlesser, rebootReq: make(chan string, 1),
		log: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "init"),
	}
	early = b.loadBootModules(early)
	for _, err := range early {
		b.log.Error("early mount", "err", err)
	}
	if n, err := raiseFileLimit(nrOpen); err != nil {
		b.log.Warn("edged keeps the kernel's file limit", "err", err)
	} else {
		b.log.Info("file limit raised", "nofile", n)
	}
	// Ctrl-Alt-Del becomes a SIGINT to init instead of an instant reset.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reaper := supervise.NewReaper(func(pid int, st syscall.WaitStatus) {
		b.log.Debug("reaped orphan", "pid", pid, "status", st)
	})
	// The reaper outlives ctx: the shutdown waits for edged's exit
	// through it.
	go reaper.Run(context.Background())
	b.reaper = reaper

	cmdline, _ := os.ReadFile(o.cmdline)
	b.slot = cmdlineValue(string(cmdline), "appliance.slot")
	b.diskless = o.mounts && cmdlineValue(string(cmdline), "root") == ""
	grace := o.healthGrace
	if g := cmdlineValue(string(cmdline), "appliance.health_grace"); g != "" {
		if d, err := time.ParseDuration(g); err == nil && d > 0 {
			grace = d
		} else {
			b.log.Warn("ignoring appliance.health_grace", "value", g)
		}
	}
	b.say("UMEDGE BOOT slot=%s", b.slot)

	b.mountData()
	b.mountESP()
	b.firstBoot()
	b.loadConfig()

	// Route only: a handle of every family fails on a kernel that has
	// XFRM as a module not loaded (Debian's: "protocol not supported").
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		b.log.Error("netlink", "err", err)
	} else {
		b.net = netcfg.New(h, b.log.With("component", "network"), o.resolvConf)
	}
	b.apply(ctx, true)

	b.edged = supervise.New(supervise.Config{
		// -config-store: PUT /config writes the operator's file also
		// while the shipped one runs (it did not load); watchConfig applies it.
		Path: o.edged, Args: []string{"-config", o.configLink, "-config-store", filepath.Join(o.dataDir, firstboot.ConfigFile)},
		Env:    []string{"PATH=/usr/bin:/bin", "HOME=" + o.dataDir, "TMPDIR=/tmp"},
		Output: out, BackoffMin: 250 * time.Millisecond, BackoffMax: 30 * time.Second,
		StableAfter: time.Minute, StopTimeout: 10 * time.Second,
	}, reaper, b.log.With("component", "supervise", "daemon", "edged"))
	edgedDone := make(chan struct{})
	go func() { b.edged.Run(ctx); close(edgedDone) }()

	b.startWatchdog(ctx)
	go b.healthLoop(ctx, grace)
	go b.watchConfig(ctx)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2, syscall.SIGHUP)
	for {
		select {
		case why := <-b.rebootReq:
			b.shutdown(cancel, edgedDone, unix.LINUX_REBOOT_CMD_RESTART, why)
		case s := <-sig:
			if s == syscall.SIGHUP {
				b.reload(ctx, "SIGHUP")
				continue
			}
			cmd := unix.LINUX_REBOOT_CMD_RESTART
			if s == syscall.SIGUSR2 {
				cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
			}
			b.shutdown(cancel, edgedDone, cmd, "on "+s.String())
		}
	}
}

// partitionWait is how long init waits for a partition by its label: the
// data partition and the ESP are on the disk the kernel found the root
// on, so they are there at once; the wait covers a slow partition scan.
// A boot from an initramfs (no root= on the command line) has no disk at
// all and does not wait.
func (b *box) partitionWait(d time.Duration) time.Duration {
	if b.diskless {
		return 0
	}
	return d
}

// mountData mounts the data partition; when there is none or it does not
// mount (a corrupt file system), a RAM disk takes its place so the box
// still comes up, and the console says that nothing will be kept.
func (b *box) mountData() {
	if b.o.dataLabel == "" {
		return
	}
	dev, err := mountLabel("/sys/class/block", b.o.dataLabel, b.o.dataDir, []string{"ext4", "vfat"}, unix.MS_NOSUID|unix.MS_NODEV, b.partitionWait(time.Second))
	if err == nil {
		b.log.Info("data partition mounted", "device", dev, "dir", b.o.dataDir)
		return
	}
	b.say("UMEDGE DATA ERROR %v; running on a RAM disk, nothing will be kept", err)
	if err := os.MkdirAll(b.o.dataDir, 0o750); err == nil {
		err = unix.Mount("tmpfs", b.o.dataDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64m")
		if err != nil {
			b.log.Error("RAM disk for the data partition", "err", err)
		}
	}
}

func (b *box) mountESP() {
	if b.o.espLabel == "" {
		return
	}
	dev, err := mountLabel("/sys/class/block", b.o.espLabel, b.o.espDir, []string{"vfat"}, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, b.partitionWait(200*time.Millisecond))
	if err != nil {
		b.log.Info("no EFI system partition; the slot will not be blessed", "err", err)
		return
	}
	b.esp = true
	b.log.Info("EFI system partition mounted", "device", dev, "dir", b.o.espDir)
}

func (b *box) firstBoot() {
	if err := b.ring.Persist(b.o.dataDir, firstboot.LogDir); err != nil {
		b.log.Error("log file", "err", err)
	}
	created, err := firstboot.Layout(b.o.dataDir, b.o.defaultConfig)
	if err != nil {
		b.log.Error("data partition layout", "err", err)
	}
	if len(created) > 0 {
		b.log.Info("first boot: data partition laid out", "created", created)
	}
}

func (b *box) loadConfig() {
	data := filepath.Join(b.o.dataDir, firstboot.ConfigFile)
	c := b.use(data, chooseConfig(data, b.o.defaultConfig))
	// Making a key takes a second under emulation: edged does not wait
	// for it unless its TLS listener is to use it.
	if b.servesDeviceCert(c.cfg) {
		b.deviceCert(c.cfg.SIP.FQDN)
	} else {
		go b.deviceCert(c.cfg.SIP.FQDN)
	}
}

func (b *box) deviceCert(fqdn string) bool {
	made, err := firstboot.DeviceCert(b.o.dataDir, fqdn, time.Now())
	if err != nil {
		b.log.Error("device certificate", "err", err)
	} else if made {
		b.log.Info("device key and self-signed certificate made", "fqdn", fqdn,
			"cert", filepath.Join(b.o.dataDir, firstboot.CertFile))
	}
	return made
}

// servesDeviceCert reports whether cfg's TLS listener uses the device's
// own key or certificate.
func (b *box) servesDeviceCert(cfg *config.Config) bool {
	t := cfg.SIP.TLS
	return cfg.SIP.Mode.UsesTLS() &&
		(t.Cert == filepath.Join(b.o.dataDir, firstboot.CertFile) || t.Key == filepath.Join(b.o.dataDir, firstboot.KeyFile))
}

// renewDeviceCert runs after NTP stepped the clock: a device certificate
// made at the wrong time (1970, on a box without a battery-backed clock)
// is not valid now and is made again, and edged, if it serves it, reloads
// it (SIGHUP: edged reads its TLS files on every reload).
func (b *box) renewDeviceCert() {
	b.mu.Lock()
	cfg := b.cfg
	b.mu.Unlock()
	if cfg == nil || !b.deviceCert(cfg.SIP.FQDN) {
		return
	}
	if b.servesDeviceCert(cfg) {
		if err := b.edged.Signal(syscall.SIGHUP); err != nil && !errors.Is(err, supervise.ErrNotRunning) {
			b.log.Error("reload edged for the new certificate", "err", err)
		}
	}
}

// use makes c the running config: configLink points at its file.
func (b *box) use(data string, c choice) choice {
	if c.err != nil {
		b.say("%s", indent("UMEDGE CONFIG ERROR ", c.err))
		b.say("UMEDGE CONFIG using %s until %s loads", c.path, data)
	}
	if err := pointAt(b.o.configLink, c.path); err != nil {
		b.log.Error("config link", "err", err)
	}
	b.mu.Lock()
	b.cfg, b.cfgFile = c.cfg, c.path
	b.stamp = stampOf(data)
	b.mu.Unlock()
	return c
}

// apply brings hostname, firewall and network to the running config.
func (b *box) apply(ctx context.Context, boot bool) {
	b.mu.Lock()
	cfg := b.cfg
	b.mu.Unlock()
	if err := unix.Sethostname([]byte(hostnameOf(cfg))); err != nil {
		b.log.Error("hostname", "err", err)
	}
	b.loadFeatureModules(cfg)
	// The ruleset is in place before the links come up.
	b.applyFirewall(cfg)
	if b.net != nil {
		if err := b.net.Apply(ctx, cfg.Network); err != nil {
			// One line per problem, each naming its key; the rest is up.
			b.say("%s", indent("UMEDGE NETWORK ERROR ", err))
		}
		if boot {
			b.bindResolvConf()
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := b.net.WaitDHCP(wctx); err != nil {
				b.log.Warn("booting on without a DHCP lease; the client keeps trying", "err", err)
			}
			cancel()
		}
	}
	if boot && len(cfg.Appliance.NTPServers) > 0 {
		s := &clock.Syncer{Servers: cfg.Appliance.NTPServers, Log: b.log.With("component", "clock"),
			Stepped: func(time.Duration) { b.renewDeviceCert() }}
		go s.Run(ctx)
	}
}

func (b *box) applyFirewall(cfg *config.Config) {
	if !cfg.Appliance.Firewall {
		if err := firewall.Remove(); err != nil {
			b.log.Error("firewall off", "err", err)
		}
		b.say("UMEDGE FIREWALL off (appliance.firewall = false)")
		return
	}
	rs, err := firewall.FromConfig(cfg)
	if err == nil {
		err = firewall.Apply(rs)
	}
	if err != nil {
		b.say("UMEDGE FIREWALL ERROR %v", err)
		return
	}
	b.say("UMEDGE FIREWALL loaded rules=%d", rs.Len())
}

// bindResolvConf makes /etc/resolv.conf show the file init writes, when
// the read-only root has a plain file there rather than a symlink to it.
func (b *box) bindResolvConf() {
	const etc = "/etc/resolv.conf"
	fi, err := os.Lstat(etc)
	if err != nil || fi.Mode()&os.ModeSymlink != 0 || !b.o.mounts {
		return
	}
	if err := unix.Mount(b.o.resolvConf, etc, "", unix.MS_BIND, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		b.log.Warn("bind resolvers over /etc/resolv.conf", "err", err)
	}
}

// reload applies a changed config file. A file that does not load, or
// that edged's own check (plugin settings included) refuses, is refused
// with every problem on the console, and the running config stays.
func (b *box) reload(ctx context.Context, why string) {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	data := filepath.Join(b.o.dataDir, firstboot.ConfigFile)
	cfg, err := config.Load(data)
	if err == nil {
		err = edgedCheck(ctx, b.reaper, b.o.edged, data)
	}
	if err != nil {
		b.mu.Lock()
		b.stamp = stampOf(data)
		running := b.cfgFile
		b.mu.Unlock()
		b.say("%s", indent("UMEDGE CONFIG ERROR ", err))
		b.say("UMEDGE CONFIG refused; %s stays in force", running)
		return
	}
	b.use(data, choice{cfg: cfg, path: data})
	b.log.Info("config changed; applying", "why", why, "file", data)
	b.apply(ctx, false)
	b.reloaded.Store(time.Now().UnixNano())
	if err := b.edged.Signal(syscall.SIGHUP); err != nil && !errors.Is(err, supervise.ErrNotRunning) {
		b.log.Error("reload edged", "err", err)
	}
}

// fileStamp tells whether a file changed: its time, size and inode. The
// inode because FAT keeps times in 2 s steps: two uploads of one size in
// one step differ by it only (each is renamed in from a file of its own).
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
	ok   bool
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// watchConfig polls the operator's config file and reloads when it
// changes. Polling works on every file system the data partition may
// have (vfat has no inotify for changes made through other mounts) and
// costs one stat every two seconds.
func (b *box) watchConfig(ctx context.Context) {
	data := filepath.Join(b.o.dataDir, firstboot.ConfigFile)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := stampOf(data)
		b.mu.Lock()
		changed := now != b.stamp
		b.mu.Unlock()
		if changed && now.ok {
			b.reload(ctx, "file changed")
		}
	}
}

func (b *box) startWatchdog(ctx context.Context) {
	b.mu.Lock()
	dev := b.cfg.Appliance.Watchdog
	b.mu.Unlock()
	if dev == "" {
		return
	}
	if _, err := os.Stat(dev); isMissing(err) {
		b.log.Info("no hardware watchdog", "device", dev)
		return
	}
	d, err := watchdog.Open(dev)
	if err != nil {
		b.log.Error("watchdog", "err", err)
		return
	}
	b.log.Info("hardware watchdog armed", "device", dev)
	go d.Keep(ctx, 5*time.Second, b.wantPet, func(err error) { b.log.Error("watchdog", "err", err) })
}

// wantPet: the watchdog is petted while edged passed a health check in
// the last 30 s, and during the first boot minutes until it first does.
func (b *box) wantPet() bool {
	if !b.healthy.Load() {
		return time.Since(b.bootStart) < 3*time.Minute
	}
	return time.Since(time.Unix(0, b.lastGood.Load())) < 30*time.Second
}

// crashLoopStarts is how many starts of edged that never became healthy
// make a slot on trial fail at once, before appliance.health_grace: a
// slow first start under load may end once or twice (a plugin's first
// answer too late), a broken build ends every time (the supervisor's
// backoff puts five starts about 4 s apart in all).
const crashLoopStarts = 5

// reloadSettle is how long after a reload a failed check is not counted:
// the init's probe follows the new file at once, edged a moment later.
const reloadSettle = 3 * time.Second

// healthLoop checks edged every second. The first pass prints READY and
// blesses the booted slot. A slot on trial that does not pass within
// grace reboots, so the firmware falls back to the other slot.
func (b *box) healthLoop(ctx context.Context, grace time.Duration) {
	var lastLogged time.Time
	var restartedFor int64 // the reload a restart was made for
	warned := false
	for {
		// Ten times a second until READY, which boot time (and the bless
		// of a slot on trial) is measured to: a probe of a port nobody
		// listens on yet is refused at once and costs next to nothing.
		every := time.Second
		if !b.healthy.Load() {
			every = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		b.reportLogErr()
		b.mu.Lock()
		cfg := b.cfg
		b.mu.Unlock()
		err := b.check(ctx, cfg)
		sinceReload := time.Since(time.Unix(0, b.reloaded.Load()))
		if err != nil && sinceReload < reloadSettle {
			continue // edged is still moving to the new config
		}
		if err != nil && b.healthy.Load() && sinceReload < 2*reloadSettle && restartedFor != b.reloaded.Load() {
			// Healthy before, not on the new config: a change edged
			// applies only at start (plugin_host, log.format, …). The
			// file passed edged's check, so a restart takes it.
			b.say("UMEDGE EDGED restarting to apply the new config (%v)", err)
			_ = b.edged.Signal(syscall.SIGTERM)
			now := time.Now().UnixNano()
			b.reloaded.Store(now) // settle again while it starts,
			restartedFor = now    // and restart once per reload only
			continue
		}
		if err == nil {
			b.lastGood.Store(time.Now().UnixNano())
			if !b.healthy.Swap(true) {
				b.say("UMEDGE READY slot=%s uptime=%s", b.slot, time.Since(b.bootStart).Round(time.Millisecond))
			}
			if !b.blessed {
				// Until it succeeds: a slot left on trial falls back at
				// the next reboot and takes no firmware upload.
				b.bless()
			}
			lastLogged = time.Time{}
			continue
		}
		if time.Since(lastLogged) >= 10*time.Second { // the first failure, then one every 10 s
			b.log.Warn("health check", "err", err)
			lastLogged = time.Now()
		}
		// edged that never came up and keeps ending is a broken slot:
		// on trial there is no need to wait out the grace.
		crashLoop := b.edged.Starts() >= crashLoopStarts
		if !b.healthy.Load() && (time.Since(b.bootStart) > grace || crashLoop && onTrial(b.o.efivars)) && !warned {
			warned = true
			if onTrial(b.o.efivars) {
				// Unblessed, the entry has no tries left: the firmware
				// boots the other slot.
				why := fmt.Sprintf("for %s", grace)
				if crashLoop {
					why = fmt.Sprintf("after %d starts of edged (last: %s)", b.edged.Starts(), b.edged.LastExit())
				}
				b.say("UMEDGE UNHEALTHY %s on trial slot %s (%v): rebooting into the other slot", why, b.slot, err)
				select {
				case b.rebootReq <- "unhealthy on trial":
				default:
				}
				return
			}
			b.say("UMEDGE UNHEALTHY for %s: %v", grace, err)
		}
	}
}

// reportLogErr says once on the console that the log file stopped
// taking lines (a full or failing data partition): the ring goes on in
// memory and on the console, and nothing else would tell.
func (b *box) reportLogErr() {
	if b.logErrSaid || b.ring == nil {
		return
	}
	if err := b.ring.FileErr(); err != nil {
		b.logErrSaid = true
		b.say("UMEDGE LOG ERROR %v; the log goes on on the console and in memory only", err)
	}
}

func (b *box) check(ctx context.Context, cfg *config.Config) error {
	target, err := health.TargetOf(cfg)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	return health.Check(cctx, target)
}

// bless marks the booted slot good. A failure is said once; the health
// loop calls it again on every passed check until it succeeds.
func (b *box) bless() {
	if !b.esp {
		b.blessed = true // nothing to bless (kernel+initramfs boot)
		return
	}
	if err := b.blesser.Bless(b.o.espDir); err != nil {
		if !b.blessErrSaid {
			b.say("UMEDGE BLESS ERROR slot=%s: %v (trying again while healthy)", b.slot, err)
			b.blessErrSaid = true
		}
		return
	}
	unix.Sync() // the bless is what keeps this slot: on disk before anything else happens
	b.blessed = true
	b.say("UMEDGE BLESSED slot=%s", b.slot)
}

// shutdown stops edged, flushes the log, unmounts the data partition and
// the ESP, and reboots or powers off.
func (b *box) shutdown(cancel context.CancelFunc, edgedDone <-chan struct{}, cmd int, why string) {
	b.say("UMEDGE SHUTDOWN %s", why)
	cancel()
	select {
	case <-edgedDone:
	case <-time.After(15 * time.Second):
	}
	_ = b.ring.Sync()
	unix.Sync()
	for _, dir := range []string{b.o.espDir, b.o.dataDir} {
		_ = unix.Unmount(dir, 0)
	}
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		fmt.Fprintln(os.Stderr, "init: reboot:", err)
	}
	os.Exit(0) // in a PID namespace (tests) reboot ends init itself
}
