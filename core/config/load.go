package config

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

// MaxFileBytes bounds a config file. A site's hand-written one is a few
// KiB, but an imported Exchange directory lives in it: 50,000 mailboxes
// are 5.7 MB (TestIntegrationImportLargeOrganisation), so 32 MiB holds
// some 280,000, and with its .prev and an upload's temporary file still
// fits the appliance's data partition.
const MaxFileBytes = 32 << 20

var (
	// ErrNotRegular means the config path is a FIFO, a directory, a
	// device or a socket rather than a file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge means the config file is over MaxFileBytes.
	ErrTooLarge = errors.New("larger than a config file can be")
)

// Load reads the file at path and parses it with Parse. A path that is
// not a regular file, or a file over MaxFileBytes, is refused without
// being read: opening a FIFO for reading would wait for a writer, and
// the appliance's init reads this file before it starts edged.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

func readFile(path string) ([]byte, error) {
	// O_NONBLOCK: the open of a FIFO without a writer returns at once
	// (it has no effect on a regular file), so the type can be checked
	// on the descriptor itself, with no window between a stat and the
	// open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	if fi.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", path, ErrTooLarge, fi.Size(), MaxFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes { // it grew while being read
		return nil, fmt.Errorf("%s: %w: over %d bytes", path, ErrTooLarge, MaxFileBytes)
	}
	return data, nil
}

// Parse decodes data over Default(), reports unknown keys and values of the
// wrong type, then runs Validate. name is used as FieldError.File. On error
// it returns every problem found, joined with errors.Join, each a
// *FieldError; a TOML syntax error is reported alone.
func Parse(name string, data []byte) (*Config, error) {
	// Decode into a plain tree first: BurntSushi's struct decoder stops at
	// the first wrong type, and we want every problem in one go.
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		return nil, syntaxError(name, err)
	}
	cfg := Default()
	cfg.file = name
	cfg.text = &text{data: data}
	defer cfg.text.release() // a running daemon asks for lines only when a reload fails

	d := &decoder{failed: map[string]bool{}}
	d.decode("", tree, reflect.ValueOf(&cfg).Elem())

	if err := cfg.validate(d.problems, d.failed); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// syntaxError turns a TOML parse failure into one *FieldError with a line.
// The dependency's error value is not wrapped, only its message kept.
func syntaxError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Position.Col > 0 {
			msg = fmt.Sprintf("column %d: %s", pe.Position.Col, msg)
		}
		return &FieldError{File: name, Line: pe.Position.Line, Err: fmt.Errorf("%w: %s", ErrSyntax, msg)}
	}
	return &FieldError{File: name, Err: fmt.Errorf("%w: %s", ErrSyntax, err.Error())}
}

// decoder copies a decoded TOML tree into the Config struct. It matches keys
// to `toml` tags exactly, and records every unknown key and wrong type
// instead of stopping at the first.
type decoder struct {
	problems []problem
	failed   map[string]bool // paths whose value could not be decoded
}

// problem is a FieldError before File and Line are known.
type problem struct {
	path string
	err  error
	alt  []string // paths whose line to use when path is not in the file
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
)

func (d *decoder) fail(path string, err error) {
	d.problems = append(d.problems, problem{path: path, err: err})
	d.failed[path] = true
}

func (d *decoder) wrongType(path, want string, v any) {
	d.fail(path, fmt.Errorf("%w: want %s, got %s", ErrInvalid, want, describe(v)))
}

func (d *decoder) decode(path string, v any, rv reflect.Value) {
	if rv.CanAddr() {
		switch pv := rv.Addr(); {
		case pv.Type().Implements(tomlUnmarshaler):
			if err := pv.Interface().(toml.Unmarshaler).UnmarshalTOML(v); err != nil {
				d.fail(path, fmt.Errorf("%w: %w", ErrInvalid, err))
			}
			return
		case pv.Type().Implements(textUnmarshaler):
			s, ok := v.(string)
			if !ok {
				d.wrongType(path, "a string", v)
				return
			}
			if err := pv.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				d.fail(path, fmt.Errorf("%w: %w", ErrInvalid, err))
			}
			return
		}
	}
	switch rv.Kind() {
	case reflect.Struct:
		d.decodeStruct(path, v, rv)
	case reflect.Map:
		d.decodeMap(path, v, rv)
	case reflect.Slice:
		d.decodeSlice(path, v, rv)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.wrongType(path, "a string", v)
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.wrongType(path, "a boolean", v)
			return
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(int64)
		if !ok {
			d.wrongType(path, "an integer", v)
			return
		}
		if rv.OverflowInt(n) {
			d.fail(path, fmt.Errorf("%w: %d does not fit", ErrOutOfRange, n))
			return
		}
		rv.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			rv.SetFloat(n)
		case int64: // calls_per_second = 5
			rv.SetFloat(float64(n))
		default:
			d.wrongType(path, "a number", v)
		}
	default:
		// Only reachable if the schema gains a field type this decoder lacks.
		d.fail(path, fmt.Errorf("%w: unsupported field type %s", ErrInvalid, rv.Type()))
	}
}

func (d *decoder) decodeStruct(path string, v any, rv reflect.Value) {
	tbl, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "a table", v)
		return
	}
	fields := tomlFields(rv.Type())
	for _, k := range slices.Sorted(maps.Keys(tbl)) {
		val := tbl[k]
		p := joinKey(path, k)
		i, ok := fields[k]
		if !ok {
			d.fail(p, ErrUnknownKey)
			continue
		}
		d.decode(p, val, rv.Field(i))
	}
}

// tomlFields maps the toml tags of t's exported fields to field indexes.
func tomlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

func (d *decoder) decodeMap(path string, v any, rv reflect.Value) {
	tbl, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "a table", v)
		return
	}
	if rv.IsNil() {
		rv.Set(reflect.MakeMap(rv.Type()))
	}
	for _, k := range slices.Sorted(maps.Keys(tbl)) {
		val := tbl[k]
		kv := reflect.ValueOf(k).Convert(rv.Type().Key())
		elem := reflect.New(rv.Type().Elem()).Elem()
		if old := rv.MapIndex(kv); old.IsValid() {
			elem.Set(old)
		}
		d.decode(joinKey(path, k), val, elem)
		rv.SetMapIndex(kv, elem)
	}
}

func (d *decoder) decodeSlice(path string, v any, rv reflect.Value) {
	arr, ok := v.([]any)
	if tables, isTables := v.([]map[string]any); isTables { // [[path]] sections
		arr, ok = make([]any, len(tables)), true
		for i, t := range tables {
			arr[i] = t
		}
	}
	if !ok {
		d.wrongType(path, "an array", v)
		return
	}
	out := reflect.MakeSlice(rv.Type(), len(arr), len(arr))
	for i, val := range arr {
		d.decode(indexKey(path, i), val, out.Index(i))
	}
	rv.Set(out)
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "date-time"
	case []any:
		return "array"
	case []map[string]any:
		return "array of tables"
	case map[string]any:
		return "table"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// describe is tomlType plus the value itself when it is short and simple.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) <= 40 {
			return fmt.Sprintf("string %q", x)
		}
	case float64:
		f := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(f, ".eEIN") {
			f += ".0" // show 16384.0 as written, so the float is visible
		}
		return "float " + f
	case int64, bool:
		return fmt.Sprintf("%s %v", tomlType(v), x)
	}
	return tomlType(v)
}
