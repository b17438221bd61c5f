package main

import "github.com/umedge/umedge/core/internal/admin"

// adminConfig is the admin server's config for listen. The bearer token is
// read from the running config's admin.token_file on each mutating call,
// so a reload that names another file, or a rewritten file, takes effect
// without moving the listener.
func (d *daemon) adminConfig(listen string) admin.Config {
	return admin.Config{
		Listen: listen,
		Token:  func() ([]byte, error) { return d.cfg.Load().Admin.Token() },
	}
}
