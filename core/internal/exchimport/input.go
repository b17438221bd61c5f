package exchimport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"

	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// Format is the serialisation of one input file.
type Format string

// The formats an input may be in; only CLIXML and CSV are imported.
const (
	FormatCLIXML    Format = "clixml"
	FormatCSV       Format = "csv"
	FormatList      Format = "format-list"
	FormatTable     Format = "format-table"
	FormatJSON      Format = "json"
	FormatUnknown   Format = "unknown"
	sniffBytes             = 4096
	encodingUTF8           = "utf-8"
	encodingUTF16LE        = "utf-16le"
	encodingUTF16BE        = "utf-16be"
)

// decode returns r as UTF-8 and the name of the encoding it was in: UTF-16
// LE or BE when a byte order mark says so (Windows PowerShell 5.1 writes
// UTF-16 LE with a BOM), or when the first character is ASCII with a zero
// byte beside it (UTF-16 without a BOM); otherwise UTF-8, without its BOM.
func decode(r io.Reader) (io.Reader, string, error) {
	br := bufio.NewReaderSize(r, sniffBytes)
	head, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", err
	}
	switch {
	case len(head) == 2 && head[0] == 0xFF && head[1] == 0xFE:
		return transform.NewReader(br, unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder()), encodingUTF16LE, nil
	case len(head) == 2 && head[0] == 0xFE && head[1] == 0xFF:
		return transform.NewReader(br, unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder()), encodingUTF16BE, nil
	case len(head) == 2 && head[0] != 0 && head[1] == 0:
		return transform.NewReader(br, unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewDecoder()), encodingUTF16LE, nil
	case len(head) == 2 && head[0] == 0 && head[1] != 0:
		return transform.NewReader(br, unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewDecoder()), encodingUTF16BE, nil
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	return br, encodingUTF8, nil
}

var (
	// "Name      : value", the first line of Format-List output.
	formatListLine = regexp.MustCompile(`^[A-Za-z][\w.]*[ \t]*: `)
	// "----  -------", the second line of Format-Table output.
	formatTableRule = regexp.MustCompile(`^-+( +-+)*\s*$`)
)

// sniff tells the format of a decoded input from its first bytes.
// unquotedCSVHeader is a CSV header line without quotes: property names
// separated by commas.
var unquotedCSVHeader = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]*(,[A-Za-z][A-Za-z0-9_.]*)+$`)

func sniff(head []byte) Format {
	head = bytes.TrimLeft(head, " \t\r\n")
	lines := bytes.SplitN(head, []byte("\n"), 3)
	first := bytes.TrimRight(lines[0], "\r")
	switch {
	case len(head) == 0:
		return FormatUnknown
	case head[0] == '<':
		return FormatCLIXML
	case head[0] == '{' || head[0] == '[':
		return FormatJSON
	case bytes.HasPrefix(head, []byte("#TYPE")) || head[0] == '"':
		return FormatCSV
	case formatListLine.Match(first):
		return FormatList
	case len(lines) > 1 && formatTableRule.Match(bytes.TrimRight(lines[1], "\r")):
		return FormatTable
	case unquotedCSVHeader.Match(bytes.TrimRight(first, "\r")):
		return FormatCSV // a header without quotes (Excel, a hand-edited file); the columns decide the rest
	}
	return FormatUnknown
}

// Input is what reading one file found out about it.
type Input struct {
	Name     string `json:"file"`
	Format   Format `json:"format"`
	Encoding string `json:"encoding"`
	Objects  int    `json:"objects"`
}

// Options tune the readers.
type Options struct {
	// ListSep joins the items of multi-valued CSV columns; default "|".
	ListSep string
}

// Read reads one export file of either format and calls each for every
// object of a known kind, in file order. Objects of other kinds are
// reported through skip. An input in a form the importer refuses gives an
// error wrapping ErrRefused that says how to export it.
func Read(r io.Reader, name string, opts Options, each func(*Object) error, skip func(Warning)) (Input, error) {
	in := Input{Name: name}
	dec, enc, err := decode(r)
	if err != nil {
		return in, fmt.Errorf("read %s: %w", name, err)
	}
	in.Encoding = enc
	br := bufio.NewReaderSize(dec, sniffBytes)
	head, err := br.Peek(sniffBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return in, fmt.Errorf("read %s: %w", name, err)
	}
	in.Format = sniff(head)
	count := func(o *Object) error { in.Objects++; return each(o) }
	switch in.Format {
	case FormatCLIXML:
		err = readCLIXML(br, name, count, skip)
	case FormatCSV:
		err = readCSV(br, name, opts, count)
	case FormatList, FormatTable:
		err = fmt.Errorf("%w: %s is Format-List or Format-Table text, which truncates collections and wraps long values; it cannot be imported.\n%s",
			ErrRefused, name, Recipe)
	case FormatJSON:
		err = fmt.Errorf("%w: %s is JSON (ConvertTo-Json), which loses enum names and nested values; it is not imported yet.\n%s",
			ErrRefused, name, Recipe)
	default:
		err = fmt.Errorf("%w: %s is neither CLIXML nor a CSV of the export recipe.\n%s", ErrRefused, name, Recipe)
	}
	return in, err
}
