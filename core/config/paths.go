package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Paths are cfg's values of the keys that name a file, a directory or a
// device the box reads, writes or executes from — plugin_host.dir, the
// token, key and certificate files, the CDR file, the watchdog device, …
// — by key, found by their names (a key ending in file, dir, cert, key,
// client_ca, sha256sums or watchdog: TestPathsKnowsEveryPathKey lists
// them; plugins.*.binary is a file name inside plugin_host.dir, which
// validation holds it to). An upload through the admin API may not change them
// (ChangedPaths): the token would otherwise buy running any binary, or
// writing any file, as the daemon's user.
func (c *Config) Paths() map[string]string {
	out := map[string]string{}
	walkPaths("", reflect.ValueOf(c).Elem(), out)
	return out
}

func walkPaths(prefix string, v reflect.Value, out map[string]string) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			walkPaths(joinKey(prefix, name), v.Field(i), out)
		}
	case reflect.Map:
		keys := v.MapKeys()
		for _, k := range keys {
			if k.Kind() == reflect.String {
				walkPaths(joinKey(prefix, k.String()), v.MapIndex(k), out)
			}
		}
	case reflect.String:
		if isPathKey(prefix) {
			out[prefix] = v.String()
		}
	}
}

// isPathKey says whether a key names a file system path by its last part.
func isPathKey(key string) bool {
	last := key[strings.LastIndexByte(key, '.')+1:]
	return last == "dir" || last == "cert" || last == "key" || last == "client_ca" || last == "sha256sums" ||
		last == "watchdog" || strings.HasSuffix(last, "_file") || strings.HasSuffix(last, "_dir")
}

// ChangedPaths are the keys whose Paths differ between running and the
// config text data (decoded over the defaults, not validated: an upload
// is refused for them before anything it names is opened), sorted; nil
// when data does not decode (Parse then says why).
func ChangedPaths(running *Config, data []byte) []string {
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		return nil
	}
	next := Default()
	d := &decoder{failed: map[string]bool{}}
	d.decode("", tree, reflect.ValueOf(&next).Elem())
	was, now := running.Paths(), next.Paths()
	var changed []string
	for k, v := range now {
		if was[k] != v {
			changed = append(changed, k)
		}
	}
	for k := range was {
		if _, ok := now[k]; !ok {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return changed
}
