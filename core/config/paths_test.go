package config

import (
	"reflect"
	"slices"
	"testing"
)

// Every key that names a path is among Paths, and nothing else is: a key
// added to the schema that names a file must end as these do (or be
// added to isPathKey), else an upload could change it.
func TestPathsKnowsEveryPathKey(t *testing.T) {
	c := Default()
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range c.Paths() {
			if !yield(k) {
				return
			}
		}
	})
	want := []string{"admin.firmware_dir", "admin.token_file", "appliance.watchdog", "capture.hep_password_file",
		"plugin_host.dir", "plugin_host.sha256sums", "sbc.cdr_file",
		"sip.tls.cert", "sip.tls.client_ca", "sip.tls.key"}
	if !slices.Equal(got, want) {
		t.Errorf("path keys %v, want %v", got, want)
	}
	// Every string key of the schema, to review when it grows: none of
	// the others names a path.
	var all []string
	var walk func(prefix string, ty reflect.Type)
	walk = func(prefix string, ty reflect.Type) {
		switch ty.Kind() {
		case reflect.Struct:
			for i := range ty.NumField() {
				if f := ty.Field(i); f.IsExported() && f.Tag.Get("toml") != "" {
					walk(joinKey(prefix, f.Tag.Get("toml")), f.Type)
				}
			}
		case reflect.Map:
			walk(prefix+".x", ty.Elem())
		case reflect.String:
			all = append(all, prefix)
		}
	}
	walk("", reflect.TypeFor[Config]())
	notPaths := []string{"admin.listen", "appliance.hostname", "capture.hep", "capture.hep_transport", "log.format",
		"log.level", "media.fast_path", "media.send_path", "network.interfaces.x.parent", "plugins.x.binary", "plugins.x.kind", "plugins.x.sha256",
		"sbc.keepalive", "sbc.peers.x.media_security", "sbc.peers.x.redirect_mode", "sbc.peers.x.refer_mode",
		"sip.fqdn", "sip.mode", "sip.tls.min_version"}
	for _, k := range all {
		if !isPathKey(k) && !slices.Contains(notPaths, k) {
			t.Errorf("string key %s is new: a path (name it so isPathKey knows) or not (add it to notPaths)?", k)
		}
	}
}

// An upload that moves a path is caught before it is validated (which
// would open what it names); one that changes other keys is not.
func TestChangedPaths(t *testing.T) {
	running := Default()
	running.Admin.TokenFile = "/data/admin.token"
	base := "[admin]\ntoken_file = \"/data/admin.token\"\n"
	for _, c := range []struct {
		name string
		data string
		want []string
	}{
		{"same paths, other settings", base + "[log]\nlevel = \"debug\"\n", nil},
		{"plugins from /usr/bin", base + "[plugin_host]\ndir = \"/usr/bin\"\n", []string{"plugin_host.dir"}},
		{"CDRs into the token", base + "[sbc]\ncdr_file = \"/data/admin.token\"\n", []string{"sbc.cdr_file"}},
		{"a token of the uploader's", "[admin]\ntoken_file = \"/data/mine\"\n", []string{"admin.token_file"}},
		{"the token dropped", "", []string{"admin.token_file"}},
		{"a watchdog on the disk", base + "[appliance]\nwatchdog = \"/dev/sda\"\n", []string{"appliance.watchdog"}},
		{"a plugin added (its binary is a name in plugin_host.dir)", base + "[plugins.umrouter]\nbinary = \"umedge-plugin-umrouter\"\n", nil},
		{"not TOML", "[admin\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ChangedPaths(&running, []byte(c.data)); !slices.Equal(got, c.want) {
				t.Errorf("changed %v, want %v", got, c.want)
			}
		})
	}
}
