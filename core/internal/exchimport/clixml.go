package exchimport

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
)

// psNamespace is the namespace of PowerShell serialization XML (MS-PSRP
// §2.2.5).
const psNamespace = "http://schemas.microsoft.com/powershell/2004/04"

// maxDepth bounds the nesting of objects a CLIXML file may have; Exchange
// exports are a few levels deep, and the bound keeps a hostile file from
// driving the reader's recursion.
const maxDepth = 64

// maxValue bounds one property value: UM values are names, numbers and
// short texts (≤512 characters in Exchange), so a longer one is no export.
// (encoding/xml has read the text node by then; the bound keeps such
// values out of the config and the report.)
const maxValue = 1 << 20

// maxItems bounds the items of one collection, a <Ref> to an earlier one
// counted in full: a list of Refs to lists of Refs would otherwise expand
// a few kilobytes into millions of items (billion laughs). The largest UM
// collection, a mailbox's EmailAddresses, has tens.
const maxItems = 100_000

// clixml reads one CLIXML stream. Type-name lists (TN RefId) and nested
// values (Obj RefId, for Ref) are remembered per file.
type clixml struct {
	d     *xml.Decoder
	name  string
	types map[string][]string
	refs  map[string]Value
	n     int // top-level objects seen
	// toString is the <ToString> of the top-level object being read.
	toString string
}

// readCLIXML walks an Export-Clixml stream token by token and calls each
// for every top-level object of a known kind.
func readCLIXML(r io.Reader, name string, each func(*Object) error, skip func(Warning)) error {
	// maxValue of text plus room for its escapes; markup between values is short.
	d := xml.NewDecoder(&runLimited{r: r, name: name, seps: "<>", limit: 2 * maxValue})
	// The bytes are UTF-8 by now, whatever the declaration says.
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(label) {
		case "utf-8", "utf8", "utf-16", "utf-16le", "utf-16be", "unicode":
			return in, nil
		}
		return nil, fmt.Errorf("%w: encoding %q", ErrMalformed, label)
	}
	c := &clixml{d: d, name: name, types: map[string][]string{}, refs: map[string]Value{}}
	root, err := c.start()
	if err != nil {
		return err
	}
	if root.Name.Local != "Objs" || root.Name.Space != psNamespace {
		return fmt.Errorf("%w: %s: root element is <%s>, not PowerShell's <Objs xmlns=%q>", ErrMalformed, name, root.Name.Local, psNamespace)
	}
	err = c.children(func(t xml.StartElement) error {
		if t.Name.Local != "Obj" {
			return c.skip()
		}
		c.n++
		o, typ, err := c.object(t)
		switch {
		case err != nil:
			return err
		case o == nil:
			skip(Warning{Path: fmt.Sprintf("%s#%d", name, c.n), Message: fmt.Sprintf("object of type %s skipped: not a UM object", typeOrUnknown(typ))})
			return nil
		}
		return each(o)
	})
	if err != nil {
		return err
	}
	return c.rest()
}

// skip skips the rest of the current element.
func (c *clixml) skip() error {
	if err := c.d.Skip(); err != nil {
		return c.malformed(err)
	}
	return nil
}

func typeOrUnknown(t string) string {
	if t == "" {
		return "(none)"
	}
	return t
}

func (c *clixml) malformed(err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %s:%d: %s", ErrMalformed, c.name, se.Line, se.Msg)
	}
	return fmt.Errorf("%w: %s: %w", ErrMalformed, c.name, err)
}

// token returns the next token, failing at the end of the input.
func (c *clixml) token() (xml.Token, error) {
	tok, err := c.d.Token()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: the file ends inside <Objs>", ErrMalformed, c.name)
	}
	if err != nil {
		return nil, c.malformed(err)
	}
	return tok, nil
}

// start returns the first element.
func (c *clixml) start() (xml.StartElement, error) {
	for {
		tok, err := c.d.Token()
		if errors.Is(err, io.EOF) {
			return xml.StartElement{}, fmt.Errorf("%w: %s: no XML element", ErrMalformed, c.name)
		}
		if err != nil {
			return xml.StartElement{}, c.malformed(err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s, nil
		}
	}
}

// rest checks that nothing but white space and comments follow </Objs>.
func (c *clixml) rest() error {
	for {
		tok, err := c.d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.malformed(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return fmt.Errorf("%w: %s: element <%s> after </Objs>", ErrMalformed, c.name, t.Name.Local)
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return fmt.Errorf("%w: %s: text after </Objs>", ErrMalformed, c.name)
			}
		}
	}
}

func attr(s xml.StartElement, name string) (string, bool) {
	for _, a := range s.Attr {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// object reads a top-level <Obj> (start already consumed). It returns nil
// and the type name for an object of no known kind.
func (c *clixml) object(start xml.StartElement) (*Object, string, error) {
	var (
		typeNames []string
		kind      string
		o         *Object
	)
	for {
		tok, err := c.token()
		if err != nil {
			return nil, "", err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			// A later <Ref> to this object stands for its string form.
			if id, ok := attr(start, "RefId"); ok {
				c.refs[id] = Value{Text: c.toString}
			}
			c.toString = ""
			if len(typeNames) > 0 && kind == "" {
				_, bare := kindOf(typeNames[0])
				return nil, bare, nil
			}
			if o == nil {
				return nil, "", nil
			}
			return o, "", nil
		case xml.StartElement:
			switch t.Name.Local {
			case "TN", "TNRef":
				names, err := c.typeNames(t)
				if err != nil {
					return nil, "", err
				}
				typeNames = names
				if len(names) > 0 {
					kind, _ = kindOf(names[0])
				}
				if kind != "" {
					o = &Object{Kind: kind, Source: fmt.Sprintf("%s#%d", c.name, c.n), Props: map[string]Value{}}
				}
			case "ToString":
				text, err := c.text()
				if err != nil {
					return nil, "", err
				}
				c.toString = decodeEscapes(text)
			case "Props", "MS":
				// MS holds PSComputerName, RunspaceId and the like from
				// remoting: ignored, like properties of unknown objects.
				if o == nil || t.Name.Local == "MS" {
					if err := c.d.Skip(); err != nil {
						return nil, "", c.malformed(err)
					}
					continue
				}
				if err := c.props(o); err != nil {
					return nil, "", err
				}
			default:
				if _, err := c.value(t, 1); err != nil {
					return nil, "", err
				}
			}
		}
	}
}

// typeNames reads <TN RefId><T>…</T></TN> or resolves <TNRef RefId/>.
func (c *clixml) typeNames(start xml.StartElement) ([]string, error) {
	id, _ := attr(start, "RefId")
	if start.Name.Local == "TNRef" {
		if err := c.d.Skip(); err != nil {
			return nil, c.malformed(err)
		}
		names, ok := c.types[id]
		if !ok {
			return nil, fmt.Errorf("%w: %s: <TNRef RefId=%q> names no earlier <TN>", ErrMalformed, c.name, id)
		}
		return names, nil
	}
	var names []string
	err := c.children(func(t xml.StartElement) error {
		text, err := c.text()
		if t.Name.Local == "T" {
			names = append(names, decodeEscapes(text))
		}
		return err
	})
	c.types[id] = names
	return names, err
}

// props reads <Props>, keeping the properties the mapping wants.
func (c *clixml) props(o *Object) error {
	keep := wanted[o.Kind]
	return c.children(func(t xml.StartElement) error {
		n, _ := attr(t, "N")
		n = decodeEscapes(n)
		if !keep[n] {
			return c.skipValue(t)
		}
		v, err := c.value(t, 1)
		if err == nil && multiValued[o.Kind][n] && !v.IsList && naiveCollection.MatchString(strings.TrimSpace(v.Text)) {
			return fmt.Errorf("%w: %s: object %d: property %s holds %q, the string form PowerShell writes for a collection deeper than Export-Clixml's -Depth; the values are not in the file.\n%s",
				ErrRefused, c.name, c.n, n, strings.TrimSpace(v.Text), Recipe)
		}
		o.Props[n] = v
		return err
	})
}

// children calls each for every child element of the current element, up
// to its end; each must consume the child.
func (c *clixml) children(each func(xml.StartElement) error) error {
	for {
		tok, err := c.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if err := each(t); err != nil {
				return err
			}
		}
	}
}

// skipValue skips an unwanted property, remembering nested objects that a
// later <Ref> may point at.
func (c *clixml) skipValue(t xml.StartElement) error {
	if t.Name.Local == "Obj" {
		_, err := c.value(t, 1)
		return err
	}
	if err := c.d.Skip(); err != nil {
		return c.malformed(err)
	}
	return nil
}

// value reads one property or collection item (start already consumed).
func (c *clixml) value(start xml.StartElement, depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, fmt.Errorf("%w: %s: objects nested more than %d deep", ErrMalformed, c.name, maxDepth)
	}
	switch start.Name.Local {
	case "Nil":
		if err := c.d.Skip(); err != nil {
			return Value{}, c.malformed(err)
		}
		return Value{Nil: true}, nil
	case "Ref":
		id, _ := attr(start, "RefId")
		if err := c.d.Skip(); err != nil {
			return Value{}, c.malformed(err)
		}
		v, ok := c.refs[id]
		if !ok {
			return Value{}, fmt.Errorf("%w: %s: <Ref RefId=%q> names no earlier object", ErrMalformed, c.name, id)
		}
		return v, nil
	case "Obj":
		return c.nested(start, depth)
	case "B":
		text, err := c.text()
		return Value{Text: strings.TrimSpace(text)}, err
	}
	text, err := c.text()
	if err != nil {
		return Value{}, err
	}
	if start.Name.Local == "S" {
		text = decodeEscapes(text)
	}
	return Value{Text: text}, nil
}

// nested reads an <Obj> inside a property: a collection (LST, IE, STK,
// QUE) becomes a list of its items' text; anything else its ToString, or
// for an enum without one its number.
func (c *clixml) nested(start xml.StartElement, depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, fmt.Errorf("%w: %s: objects nested more than %d deep", ErrMalformed, c.name, maxDepth)
	}
	var (
		v        Value
		toString string
		hasTS    bool
		number   string
	)
	for {
		tok, err := c.token()
		if err != nil {
			return Value{}, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if !v.IsList {
				v.Text = number
				if hasTS {
					v.Text = toString
				}
			}
			if id, ok := attr(start, "RefId"); ok {
				c.refs[id] = v
			}
			return v, nil
		case xml.StartElement:
			switch t.Name.Local {
			case "TN", "TNRef":
				if _, err := c.typeNames(t); err != nil {
					return Value{}, err
				}
			case "ToString":
				text, err := c.text()
				if err != nil {
					return Value{}, err
				}
				toString, hasTS = decodeEscapes(text), true
			case "LST", "IE", "STK", "QUE":
				v.IsList = true
				if err := c.items(&v, depth); err != nil {
					return Value{}, err
				}
			case "I32", "I64", "I16", "U8", "U16", "U32", "U64", "By", "SB":
				text, err := c.text()
				if err != nil {
					return Value{}, err
				}
				number = strings.TrimSpace(text)
			case "Obj":
				if _, err := c.nested(t, depth+1); err != nil {
					return Value{}, err
				}
			default: // Props, MS, DCT: not needed from a nested object
				if err := c.d.Skip(); err != nil {
					return Value{}, c.malformed(err)
				}
			}
		}
	}
}

// items reads the items of a collection into v.List.
func (c *clixml) items(v *Value, depth int) error {
	return c.children(func(t xml.StartElement) error {
		item, err := c.value(t, depth+1)
		switch {
		case err != nil:
			return err
		case item.Nil:
		case item.IsList:
			if len(v.List)+len(item.List) > maxItems {
				return fmt.Errorf("%w: %s: a collection of more than %d items", ErrMalformed, c.name, maxItems)
			}
			v.List = append(v.List, item.List...)
		default:
			if len(v.List) >= maxItems {
				return fmt.Errorf("%w: %s: a collection of more than %d items", ErrMalformed, c.name, maxItems)
			}
			v.List = append(v.List, item.Text)
		}
		return nil
	})
}

// text reads the character data of a simple element up to its end,
// skipping any child elements.
func (c *clixml) text() (string, error) {
	var b strings.Builder
	for {
		tok, err := c.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if b.Len()+len(t) > maxValue {
				return "", fmt.Errorf("%w: %s: a value longer than %d bytes", ErrMalformed, c.name, maxValue)
			}
			b.Write(t)
		case xml.StartElement:
			if err := c.d.Skip(); err != nil {
				return "", c.malformed(err)
			}
		case xml.EndElement:
			return b.String(), nil
		}
	}
}

// decodeEscapes decodes PowerShell's _xHHHH_ escapes of characters XML
// cannot carry (UTF-16 code units, so a pair of them may be one rune).
func decodeEscapes(s string) string {
	if !strings.Contains(s, "_x") {
		return s
	}
	var (
		b     strings.Builder
		units []uint16
	)
	flush := func() {
		if len(units) > 0 {
			b.WriteString(string(utf16.Decode(units)))
			units = units[:0]
		}
	}
	for i := 0; i < len(s); {
		if i+7 <= len(s) && s[i] == '_' && s[i+1] == 'x' && s[i+6] == '_' {
			if n, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
				units = append(units, uint16(n))
				i += 7
				continue
			}
		}
		flush()
		b.WriteByte(s[i])
		i++
	}
	flush()
	return b.String()
}
