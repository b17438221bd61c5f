package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// pluginSet returns the go-plugin shims the host can dispense, by name: the
// shared base shim, which serves hs to the process, and one shim per
// plugin kind.
func pluginSet(hs base.HostServices) plugin.PluginSet {
	return plugin.PluginSet{
		base.PluginName:   &base.GRPCPlugin{Host: hs},
		router.PluginName: &router.GRPCPlugin{},
	}
}

// proc is one started, verified and configured plugin process.
type proc struct {
	client  *plugin.Client
	cmd     *exec.Cmd
	conn    *grpc.ClientConn // the plugin's gRPC connection, for health probes
	pid     int
	info    base.Info
	base    *base.Client
	router  router.Router // set for KindRouter
	host    *hostServices // what the process reported through the host services
	started time.Time

	calls sync.WaitGroup // host calls in flight, counted by instance.acquire

	mu         sync.Mutex
	failures   int    // health probes failed in a row
	hungReason string // why it was killed as hung; "" unless it was
}

// release ends a call counted by instance.acquire.
func (p *proc) release() { p.calls.Done() }

// waitCalls waits up to d for the host's calls in flight to return.
func (p *proc) waitCalls(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		p.calls.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false // the goroutine ends once the process is gone
	}
}

// probe asks go-plugin's gRPC health service of the process whether it
// serves, within timeout.
func (p *proc) probe(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health probe: %w: %s", errNotServing, st)
	}
	return nil
}

// recordProbe counts a probe result and returns the failures in a row.
func (p *proc) recordProbe(err error) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.failures = 0
	} else {
		p.failures++
	}
	return p.failures
}

// health returns the probe failures in a row and whether p was killed as
// hung.
func (p *proc) health() (failures int, hungReason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures, p.hungReason
}

// killHung records why p is hung and kills it with SIGKILL: a process
// that does not answer its health probes would not answer go-plugin's
// graceful shutdown either.
func (p *proc) killHung(reason string) error {
	p.mu.Lock()
	p.hungReason = reason
	p.mu.Unlock()
	return p.sigkill()
}

// sigkill ends the process at once; kill must still be called to reap
// go-plugin's goroutines.
func (p *proc) sigkill() error {
	if p.cmd.Process == nil {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill pid %d: %w", p.pid, err)
	}
	return nil
}

// minCallWait is how long stop waits for the answers to the host's calls
// in flight after a plugin said it is idle, even when Drain used up the
// timeout: the answers are on their way.
const minCallWait = 250 * time.Millisecond

// stop drains the process for at most timeout, then ends it: gracefully
// when it answered Drain, with SIGKILL first when it did not. The caller
// must have stopped new calls (instance.acquire) first. When the plugin
// is idle, the host's own calls in flight get their answers before the
// process ends: go-plugin's shutdown drops answers not yet sent.
func (p *proc) stop(ctx context.Context, timeout time.Duration) (base.DrainResult, error) {
	deadline := time.Now().Add(timeout)
	res, err := p.base.Drain(ctx, timeout)
	switch {
	case err != nil:
		_ = p.sigkill() // kill reaps it either way
	case res.Idle:
		p.waitCalls(max(time.Until(deadline), minCallWait))
	}
	p.kill()
	return res, err
}

// exited reports whether the process has exited.
func (p *proc) exited() bool { return p.client.Exited() }

// exitReason describes how the process ended, e.g. "signal: killed". Only
// valid after exited returned true: go-plugin sets Exited after cmd.Wait.
func (p *proc) exitReason() string {
	if p.cmd.ProcessState == nil {
		return "exited"
	}
	return p.cmd.ProcessState.String()
}

// kill ends the process (gracefully if it still answers) and waits for
// go-plugin's goroutines to finish.
func (p *proc) kill() { p.client.Kill() }

// startProcess verifies, starts and configures one plugin process: pin
// check (by go-plugin's SecureConfig, right before exec), handshake, Info
// check, Configure(s.Settings), and dispensing of the kind's shim.
func (h *Host) startProcess(ctx context.Context, s Spec) (_ *proc, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, ok := pluginSet(nil)[string(s.Kind)]; !ok || string(s.Kind) == base.PluginName {
		return nil, fmt.Errorf("%w %q", errBadKind, s.Kind)
	}
	path, err := binaryPath(h.cfg.Dir, s.Binary)
	if err != nil {
		return nil, err
	}
	want, err := h.pin(s)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("plugin binary: %w", err)
	}

	hs := newHostServices(h.log, s.Name)
	cmd := exec.Command(path)
	dieWithHost(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  base.Handshake,
		Plugins:          pluginSet(hs),
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: want, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     h.cfg.StartTimeout,
		Logger:           newHCLog(h.log, s.Name),
	})
	defer func() {
		if err != nil {
			client.Kill()
		}
	}()

	rpc, err := client.Client()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			got, herr := fileSHA256(path)
			if herr != nil {
				got = "unreadable (" + herr.Error() + ")"
			}
			return nil, fmt.Errorf("%w: %s: expected %s, actual %s",
				ErrChecksumMismatch, path, hex.EncodeToString(want), got)
		}
		// Kill waits for go-plugin's cmd.Wait, so ProcessState is safe to read.
		client.Kill()
		if ps := cmd.ProcessState; ps != nil && ps.Exited() {
			return nil, fmt.Errorf("start %s: %w (%s)", path, errExitedEarly, ps)
		}
		return nil, fmt.Errorf("start %s: %w", path, err)
	}

	p := &proc{client: client, cmd: cmd, host: hs, started: time.Now()}
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		return nil, fmt.Errorf("%w: protocol client is %T", errBadDispense, rpc)
	}
	p.conn = gc.Conn
	raw, err := rpc.Dispense(base.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense %s: %w", base.PluginName, err)
	}
	if p.base, ok = raw.(*base.Client); !ok {
		return nil, fmt.Errorf("%w: %s is %T", errBadDispense, base.PluginName, raw)
	}

	cctx, cancel := context.WithTimeout(ctx, h.cfg.CallTimeout)
	defer cancel()
	info, err := p.base.Info(cctx)
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	// The API version first: a plugin of another version may carry its
	// kind in a form this host does not read.
	if info.APIVersion != base.APIVersion {
		return nil, fmt.Errorf("%w: %s (%s) was built for api version %d, host speaks %d",
			ErrAPIVersion, s.Binary, info.Name, info.APIVersion, base.APIVersion)
	}
	if info.Kind != s.Kind {
		return nil, fmt.Errorf("%w: %s (%s) says it is a %q plugin, config wants %q",
			ErrKindMismatch, s.Binary, info.Name, info.Kind, s.Kind)
	}
	p.info = *info

	// Settings with a large directory take longer than a call: Configure
	// gets the table's deadline.
	conf, cancelConf := context.WithTimeout(ctx, max(h.cfg.CallTimeout, tableTimeout))
	defer cancelConf()
	if err := p.base.Configure(conf, s.Settings); err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}

	switch s.Kind {
	case base.KindRouter:
		raw, err := rpc.Dispense(string(s.Kind))
		if err != nil {
			return nil, fmt.Errorf("dispense %s: %w", s.Kind, err)
		}
		if p.router, ok = raw.(router.Router); !ok {
			return nil, fmt.Errorf("%w: %s is %T", errBadDispense, s.Kind, raw)
		}
	default:
		return nil, fmt.Errorf("%w %q", errBadKind, s.Kind)
	}
	return p, nil
}

// permanent reports whether a restart error will not go away by retrying
// the same spec: the supervisor then marks the plugin failed instead of
// backing off forever. What an operator fixes on disk is not permanent: a
// binary that fails its pin, is missing, or is not in the sums file (or a
// sums file that is missing or malformed) is retried with backoff, the
// binary and the pin read again on every attempt.
func permanent(err error) bool {
	var ce *base.ConfigError
	return errors.As(err, &ce) ||
		errors.Is(err, ErrKindMismatch) ||
		errors.Is(err, ErrAPIVersion) ||
		errors.Is(err, errBadBinary) ||
		errors.Is(err, errBadKind)
}
