package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// pluginSet returns the go-plugin shims the host can dispense, by name: the
// shared base shim and one shim per plugin kind.
func pluginSet() plugin.PluginSet {
	return plugin.PluginSet{
		base.PluginName:   &base.GRPCPlugin{},
		router.PluginName: &router.GRPCPlugin{},
	}
}

// proc is one started, verified and configured plugin process.
type proc struct {
	client  *plugin.Client
	cmd     *exec.Cmd
	pid     int
	info    base.Info
	base    base.Plugin
	router  router.Router // set for KindRouter
	started time.Time
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
	if _, ok := pluginSet()[string(s.Kind)]; !ok || string(s.Kind) == base.PluginName {
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

	cmd := exec.Command(path)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  base.Handshake,
		Plugins:          pluginSet(),
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

	p := &proc{client: client, cmd: cmd, started: time.Now()}
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	raw, err := rpc.Dispense(base.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense %s: %w", base.PluginName, err)
	}
	var ok bool
	if p.base, ok = raw.(base.Plugin); !ok {
		return nil, fmt.Errorf("%w: %s is %T", errBadDispense, base.PluginName, raw)
	}

	cctx, cancel := context.WithTimeout(ctx, h.cfg.CallTimeout)
	defer cancel()
	info, err := p.base.Info(cctx)
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	if info.Kind != s.Kind {
		return nil, fmt.Errorf("%w: %s (%s) says it is a %q plugin, config wants %q",
			ErrKindMismatch, s.Binary, info.Name, info.Kind, s.Kind)
	}
	if info.APIVersion != base.APIVersion {
		return nil, fmt.Errorf("%w: %s (%s) was built for api version %d, host speaks %d",
			ErrAPIVersion, s.Binary, info.Name, info.APIVersion, base.APIVersion)
	}
	p.info = *info

	if err := p.base.Configure(cctx, s.Settings); err != nil {
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

// permanent reports whether a start error will not go away by retrying
// the same spec: the supervisor then marks the plugin failed instead of
// backing off forever.
func permanent(err error) bool {
	var ce *base.ConfigError
	return errors.As(err, &ce) ||
		errors.Is(err, ErrNoPin) ||
		errors.Is(err, ErrChecksumMismatch) ||
		errors.Is(err, ErrKindMismatch) ||
		errors.Is(err, ErrAPIVersion) ||
		errors.Is(err, errBadBinary) ||
		errors.Is(err, errBadPin) ||
		errors.Is(err, errBadKind) ||
		errors.Is(err, fs.ErrNotExist)
}
