package exchimport

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// repoFile is a file of the repository, found from this package.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join("..", "..", "..", filepath.FromSlash(rel))
}

// namedTables are the tables whose keys are names, written * in key paths.
var namedTables = regexp.MustCompile(`^(plugins)\.[^.]+|(\.(gateways|hunt_groups|dial_plans|mailboxes|pools))\.("[^"]*"|[^.]+)`)

// shippedKeys collects every key path of the shipped configs, with named
// tables as *, and the keys the umrouter README documents.
func shippedKeys(t *testing.T) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	files, err := filepath.Glob(repoFile(t, "configs/*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped configs: %v", err)
	}
	for _, f := range files {
		var doc map[string]any
		if _, err := toml.DecodeFile(f, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk("", doc, keys)
	}
	readme, err := os.ReadFile(repoFile(t, "plugins/umrouter/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// "### `[mailboxes.<name>]`" opens a table of "| `key` | …" rows.
	section := ""
	for _, line := range strings.Split(string(readme), "\n") {
		if m := regexp.MustCompile("^### `\\[(\\w+)\\.<name>\\]`").FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		if m := regexp.MustCompile("^\\| `([\\w\\[\\].]+)` \\|").FindStringSubmatch(line); m != nil && section != "" {
			k := strings.ReplaceAll(m[1], "backends[].", "backends.")
			keys["plugins.*.settings."+section+".*."+k] = true
		}
	}
	return keys
}

func walk(prefix string, v any, keys map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, e, keys)
		}
	case []map[string]any:
		for _, e := range t {
			walk(prefix, e, keys)
		}
	default:
		keys[normalKey(prefix)] = true
	}
}

func normalKey(p string) string {
	return namedTables.ReplaceAllString(p, "$1$2.*")
}

// TestMappedKeysAreShipped fails when a config key the mapping writes is
// no longer in a shipped config or the umrouter README: the mapping must
// follow the config.
func TestMappedKeysAreShipped(t *testing.T) {
	shipped := shippedKeys(t)
	written := map[string]bool{}
	for _, res := range []*Result{importFiles(t, "sample.clixml"), importData(t, minimalNames, minimal())} {
		for k := range res.Keys {
			written[normalKey(strings.Replace(k, "plugins.umrouter.", "plugins.*.", 1))] = true
		}
	}
	if len(written) < 20 {
		t.Fatalf("only %d keys written: %v", len(written), written)
	}
	for k := range written {
		if !shipped[k] {
			t.Errorf("the import writes %s, which no shipped config (configs/*.toml) nor the umrouter README has", k)
		}
	}
}
