package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestIndexLines(t *testing.T) {
	tests := []struct {
		name string
		give string
		want map[string]int // path → line; 0 = must be absent
	}{
		{
			name: "tables and keys",
			give: "# comment\n[sip]\ntcp_port = 5060 # trailing\n\n[sip.tls]\ncert = \"x\"\n",
			want: map[string]int{"sip": 2, "sip.tcp_port": 3, "sip.tls": 5, "sip.tls.cert": 6, "sip.tls.key": 0},
		},
		{
			name: "implicit parents",
			give: "[plugins.umrouter.settings.gateways.lab]\nstatus = \"Enabled\"\n",
			want: map[string]int{
				"plugins": 1, "plugins.umrouter": 1, "plugins.umrouter.settings.gateways.lab": 1,
				"plugins.umrouter.settings.gateways.lab.status": 2,
			},
		},
		{
			name: "explicit parent after child keeps first line",
			give: "[a.b]\nx = 1\n[a]\ny = 2\n",
			want: map[string]int{"a": 1, "a.b": 1, "a.b.x": 2, "a.y": 4},
		},
		{
			name: "arrays of tables",
			give: "[[x.y]]\nz = 1\n[[x.y]]\nz = 2\n[x.y.sub]\nk = 3\n[[x.y.list]]\nq = 4\n",
			want: map[string]int{
				"x.y": 1, "x.y[0]": 1, "x.y[0].z": 2, "x.y[1]": 3, "x.y[1].z": 4,
				"x.y[1].sub": 5, "x.y[1].sub.k": 6, "x.y[1].list[0]": 7, "x.y[1].list[0].q": 8,
			},
		},
		{
			name: "nested arrays of tables restart per parent",
			give: "[[a]]\n[[a.b]]\n[[a.b]]\n[[a]]\n[[a.b]]\nv = 1\n",
			want: map[string]int{"a[0].b[0]": 2, "a[0].b[1]": 3, "a[1]": 4, "a[1].b[0]": 5, "a[1].b[0].v": 6, "a[1].b[1]": 0},
		},
		{
			name: "quoted keys",
			give: "[mailboxes.\"a.b\"]\n'x y' = 1\n\"q\\\"uote\" = 2\n\"\\u0041\" = 3\n[mailboxes . 'lit' ]\nk=1\n",
			want: map[string]int{
				`mailboxes."a.b"`: 1, `mailboxes."a.b"."x y"`: 2, `mailboxes."a.b"."q\"uote"`: 3,
				`mailboxes."a.b".A`: 4, "mailboxes.lit": 5, "mailboxes.lit.k": 6,
			},
		},
		{
			name: "dotted keys",
			give: "[t]\na.b.c = 1\na . \"d\" = 2\n",
			want: map[string]int{"t.a": 2, "t.a.b": 2, "t.a.b.c": 2, "t.a.d": 3},
		},
		{
			name: "multi-line strings skip inner lines",
			give: "a = \"\"\"\n[not.a.table]\nx = 1\n\"\"\"\nb = '''\ny = 2\n'''\nc = \"\"\"q\\\n\"\"\"\"\"\nd = 4\n",
			want: map[string]int{"a": 1, "not.a.table": 0, "x": 0, "b": 5, "y": 0, "c": 8, "d": 10},
		},
		{
			name: "multi-line arrays",
			give: "listen = [\n  \"127.0.0.1\", # one\n  # [fake]\n  \"::1\",\n]\nnext = 1\n",
			want: map[string]int{"listen": 1, "listen[0]": 2, "listen[1]": 4, "fake": 0, "next": 6},
		},
		{
			name: "inline tables",
			give: "a = {x = 1, y = {z = \"}\"}}\nb = [{p = 1}, {p = 2}]\nc = {\n  k = 1,\n}\n",
			want: map[string]int{"a": 1, "a.x": 1, "a.y.z": 1, "b": 2, "b[0].p": 2, "b[1].p": 2, "c": 3, "c.k": 4},
		},
		{
			name: "crlf and bom",
			give: "\ufeff[sip]\r\nmode = \"tcp\"\r\n",
			want: map[string]int{"sip": 1, "sip.mode": 2},
		},
		{
			name: "strings with hashes and brackets",
			give: "a = \"# not a comment [x]\"\nb = 'it''s'\n[c]\n",
			want: map[string]int{"a": 1, "b": 2, "c": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := indexLines([]byte(tt.give))
			for path, want := range tt.want {
				got, ok := idx[path]
				if want == 0 && ok {
					t.Errorf("index[%q] = %d, want absent", path, got)
				}
				if want != 0 && got != want {
					t.Errorf("index[%q] = %d, want %d", path, got, want)
				}
			}
		})
	}
}

func TestLineIndexNearest(t *testing.T) {
	idx := indexLines([]byte("[plugins.r.settings.gateways.\"a.b\"]\nx = 1\n[[p.q]]\n"))
	tests := []struct {
		give string
		want int
	}{
		{give: `plugins.r.settings.gateways."a.b".x`, want: 2},
		{give: `plugins.r.settings.gateways."a.b".status`, want: 1},
		{give: `plugins.r.settings.other.thing`, want: 1},
		{give: `p.q[0].missing`, want: 3},
		{give: `p.q[4]`, want: 3},
		{give: `nothing.here`, want: 0},
		{give: ``, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := idx.nearest(tt.give); got != tt.want {
				t.Errorf("nearest(%q) = %d, want %d", tt.give, got, tt.want)
			}
		})
	}
}

func TestParents(t *testing.T) {
	got := parents(`a.b[2]."c.d[0]".e`)
	want := []string{`a.b[2]."c.d[0]"`, `a.b[2]`, `a.b`, `a`}
	if !slices.Equal(got, want) {
		t.Errorf("parents = %q, want %q", got, want)
	}
}

// checkIndexCoversKeys fails when a key BurntSushi reports for valid TOML is
// missing from the index (array indexes aside, which BurntSushi omits).
func checkIndexCoversKeys(t *testing.T, data []byte, idx lineIndex) {
	t.Helper()
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		return
	}
	have := map[string]bool{}
	for p := range idx {
		have[stripIndexes(p)] = true
	}
	for _, k := range md.Keys() {
		path := ""
		for _, part := range k {
			path = joinKey(path, part)
		}
		if !have[path] {
			t.Errorf("key %q (from BurntSushi) is not in the line index", path)
		}
	}
}

// stripIndexes removes the [n] parts of a path outside quoted keys.
func stripIndexes(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		switch c := path[i]; c {
		case '"':
			j := i + 1
			for ; j < len(path) && path[j] != '"'; j++ {
				if path[j] == '\\' {
					j++
				}
			}
			b.WriteString(path[i:min(j+1, len(path))])
			i = j
		case '[':
			for i < len(path) && path[i] != ']' {
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestIndexCoversShippedAndTestdata(t *testing.T) {
	for name, data := range seedFiles(t) {
		t.Run(name, func(t *testing.T) {
			idx := indexLines(data)
			checkIndexCoversKeys(t, data, idx)
		})
	}
}
