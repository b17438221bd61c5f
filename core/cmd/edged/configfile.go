package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/admin"
)

// configFile is the admin API's GET and PUT /config: the file edged was
// started with (-config). A symlink there (the appliance's
// /run/umedge/umedge.toml, which the init points at /data/umedge.toml) is
// followed: the upload replaces the file it points at, never the link —
// or, with -config-store, that file (the appliance's /data/umedge.toml,
// also while the init runs the shipped config because the operator's did
// not load: an upload is how the operator mends it).
type configFile struct{ d *daemon }

// Read returns the file at the config path as it is now.
func (c configFile) Read() ([]byte, error) {
	f, err := os.Open(c.d.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, config.MaxFileBytes+1))
	if err == nil && len(data) > config.MaxFileBytes {
		err = fmt.Errorf("%s: %w", c.d.path, config.ErrTooLarge)
	}
	return data, err
}

// Replace checks data as `edged config check` does (config.Parse under
// the name of the file it is to replace, then every plugin's check of its
// settings), and only then writes it: into a temporary file beside the
// target, synced; the file in force is copied (synced) to TARGET.prev; the
// new file is renamed over the target and the directory synced. A reader
// (a SIGHUP reload, the appliance's init) sees the old file or the new
// one, never part of one, and any failure before the rename leaves the
// target as it was. Then it reloads with Reload, the code of POST /reload
// and SIGHUP, not cancelled when the client goes away: the file is
// written by then. A reload that fails after the write (a change only a
// restart applies, say) is in the result; the old config then runs, or,
// when the reload applied part of the file (InPart), a mix of both.
// When the file written is not the one in force (-config-store names
// another), nothing is reloaded: whoever pointed edged there applies it
// (the appliance's init, within its 2 s poll) and the result says so.
func (c configFile) Replace(ctx context.Context, data []byte) (admin.ConfigWritten, error) {
	d := c.d
	inForce, err := filepath.EvalSymlinks(d.path)
	if err != nil {
		return admin.ConfigWritten{}, fmt.Errorf("config %s: %w", d.path, err)
	}
	target := inForce
	if d.store != "" {
		if target, err = storeTarget(d.store); err != nil {
			return admin.ConfigWritten{}, err
		}
	}
	// Where the box reads, writes and runs from stays as the file on the
	// box says: with the token alone an upload could otherwise run any
	// binary (plugin_host.dir) or write any file (sbc.cdr_file) as edged's
	// user, or swap the token for one of its own. Checked before the
	// upload is validated, which opens the files it names.
	if keys := config.ChangedPaths(d.cfg.Load(), data); len(keys) > 0 {
		return admin.ConfigWritten{}, fmt.Errorf("%w:\n%s: %s: may not be changed through the admin API (it names a file, directory or device the box uses): edit %s on the box",
			admin.ErrConfigInvalid, target, strings.Join(keys, ", "), target)
	}
	cfg, err := config.Parse(target, data)
	if err == nil {
		err = checkPlugins(ctx, cfg)
	}
	if err != nil {
		var b strings.Builder
		printProblems(&b, err)
		return admin.ConfigWritten{}, fmt.Errorf("%w:\n%s", admin.ErrConfigInvalid, b.String())
	}
	prev, err := replaceFile(target, data)
	if err != nil {
		return admin.ConfigWritten{}, err
	}
	d.log.Warn("config file replaced through the admin API", "file", target, "prev", prev)
	res := admin.ConfigWritten{File: target, Prev: prev}
	if target != inForce {
		res.NotInForce = inForce
		return res, nil
	}
	if res.ReloadErr = d.Reload(context.WithoutCancel(ctx)); res.ReloadErr != nil {
		res.InPart = errors.Is(res.ReloadErr, errAppliedInPart)
		d.log.Error("the uploaded config is written but did not reload", "file", target, "in_part", res.InPart, "err", res.ReloadErr)
	}
	return res, nil
}

// storeTarget is the file -config-store names, its symlinks resolved; a
// file that does not exist yet is written where it is named.
func storeTarget(store string) (string, error) {
	t, err := filepath.EvalSymlinks(store)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Lstat(store); serr != nil {
			return store, nil // no file, no dangling link: a new file
		}
	}
	if err != nil {
		return "", fmt.Errorf("config store %s: %w", store, err)
	}
	return t, nil
}

// replaceFile writes data over target atomically and keeps what was there
// as target+".prev" (returned; "" when there was no file). The new file
// gets the old one's permissions, 0600 when there was none. A target that
// is there but no regular file (a FIFO, a device) is refused.
func replaceFile(target string, data []byte) (prev string, err error) {
	old, mode, err := readOld(target)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(target)
	tmp, err := syncedTemp(dir, filepath.Base(target), data, mode)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", target, err)
	}
	defer func() { _ = os.Remove(tmp) }() // gone after the rename
	if old != nil {
		prev = target + ".prev"
		tmpPrev, err := syncedTemp(dir, filepath.Base(prev), old, mode)
		if err == nil {
			if err = os.Rename(tmpPrev, prev); err != nil {
				_ = os.Remove(tmpPrev)
			}
		}
		if err != nil {
			return "", fmt.Errorf("keep the previous config as %s: %w", prev, err)
		}
	}
	if err := os.Rename(tmp, target); err != nil {
		return "", fmt.Errorf("write %s: %w", target, err)
	}
	if err := syncDir(dir); err != nil {
		return prev, fmt.Errorf("written %s, but syncing its directory failed: %w", target, err)
	}
	return prev, nil
}

// readOld reads the file replaceFile is to replace, and its permissions:
// nil and 0600 when there is none. It opens without blocking and wants a
// regular file: reading a FIFO put there would hang the upload, and with
// it the one upload slot.
func readOld(target string) ([]byte, os.FileMode, error) {
	f, err := os.OpenFile(target, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if os.IsNotExist(err) {
		return nil, 0o600, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the file to replace: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("read the file to replace: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is not a regular file (mode %s): not replaced", target, fi.Mode())
	}
	old, err := io.ReadAll(f)
	if err != nil {
		return nil, 0, fmt.Errorf("read the file to replace: %w", err)
	}
	return old, fi.Mode().Perm(), nil // old is not nil: an empty file is kept as .prev too
}

// syncedTemp writes data to a new temporary file in dir, synced to disk,
// and returns its name; on failure nothing is left.
func syncedTemp(dir, base string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
