package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
)

// pluginSettings reads a whole umedge configuration file generically and
// returns the re-encoded [plugins.<name>.settings] table, as the core hands
// it to the plugin; ok is false when the file has no such table.
func pluginSettings(t *testing.T, file, name string) (settings []byte, ok bool) {
	t.Helper()
	var doc map[string]any
	if _, err := toml.DecodeFile(file, &doc); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	plugins, _ := doc["plugins"].(map[string]any)
	plugin, _ := plugins[name].(map[string]any)
	table, ok := plugin["settings"].(map[string]any)
	if !ok {
		return nil, false
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(table); err != nil {
		t.Fatalf("re-encode plugins.%s.settings of %s: %v", name, file, err)
	}
	return buf.Bytes(), true
}

// TestShippedConfig configures the plugin with the [plugins.umrouter.settings]
// table of every shipped config that has one, so that none of them rots.
func TestShippedConfig(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "configs", "*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tested := 0
	for _, file := range files {
		settings, ok := pluginSettings(t, file, "umrouter")
		if !ok {
			continue
		}
		tested++
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := New()
			if err := r.Configure(t.Context(), settings); err != nil {
				t.Fatalf("Configure(plugins.umrouter.settings of %s) = %v", file, err)
			}
			topo, err := r.Table(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(topo.Gateways) == 0 || len(topo.Pools) == 0 {
				t.Errorf("table of %s has %d gateways and %d pools, want some of each", file, len(topo.Gateways), len(topo.Pools))
			}
		})
	}
	if tested < 2 {
		t.Errorf("only %d shipped configs have a umrouter table, want configs/umedge.toml and configs/edge.toml", tested)
	}
}

// TestExampleSettings configures the README's examples, kept as whole
// umedge files in testdata.
func TestExampleSettings(t *testing.T) {
	for _, name := range []string{"example-minimal.toml", "example-two-sites.toml"} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", name)
			settings, ok := pluginSettings(t, file, "umrouter")
			if !ok {
				t.Fatalf("%s has no [plugins.umrouter.settings] table", file)
			}
			if err := New().Configure(t.Context(), settings); err != nil {
				t.Fatalf("Configure(%s) = %v", file, err)
			}
		})
	}
}
