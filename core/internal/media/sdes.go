package media

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// suite is one SDES crypto-suite (RFC 4568 §6.2, RFC 7714 §12).
type suite struct {
	name    string
	profile srtp.ProtectionProfile
	keyLen  int
	saltLen int
}

// suites are the crypto-suites the engine speaks, in the order it offers
// them: the 80-bit tag first, since every SDES endpoint has it.
var suites = [...]suite{
	{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14},
	{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14},
	{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 16, 12},
}

func suiteIndex(name string) int {
	for i, s := range suites {
		if strings.EqualFold(s.name, name) {
			return i
		}
	}
	return -1
}

// sdesKey is one master key and salt of a suite; zero means none.
type sdesKey struct {
	suite int
	key   []byte // master key || master salt
}

func (k sdesKey) valid() bool { return len(k.key) > 0 }

func (k sdesKey) equal(o sdesKey) bool { return k.suite == o.suite && string(k.key) == string(o.key) }

// newKey draws a fresh master key and salt for suite i.
func newKey(i int) (sdesKey, error) {
	b := make([]byte, suites[i].keyLen+suites[i].saltLen)
	if _, err := rand.Read(b); err != nil {
		return sdesKey{}, fmt.Errorf("draw SRTP key: %w", err)
	}
	return sdesKey{suite: i, key: b}, nil
}

// cryptoLine is one a=crypto attribute.
type cryptoLine struct {
	tag   int
	suite int // index in suites; -1 for a suite we do not speak
	key   sdesKey
	raw   string // the attribute value as received, for pass-through
}

// parseCrypto parses the value of an a=crypto attribute. A line the engine
// cannot use (unknown suite, MKI, several keys, session parameters) comes
// back with suite -1 and no error: the offer may carry a usable one next.
func parseCrypto(v string) (cryptoLine, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return cryptoLine{}, fmt.Errorf("%w: a=crypto:%s: want tag, suite and key parameters", ErrBadSDP, v)
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || tag > 999999999 {
		return cryptoLine{}, fmt.Errorf("%w: a=crypto:%s: tag %q is not 1-9 digits", ErrBadSDP, v, f[0])
	}
	c := cryptoLine{tag: tag, suite: -1, raw: v}
	si := suiteIndex(f[1])
	if si < 0 || len(f) > 3 || strings.Contains(f[2], ";") {
		return c, nil // session parameters or several keys: not ours to use
	}
	inline, ok := strings.CutPrefix(f[2], "inline:")
	if !ok {
		return cryptoLine{}, fmt.Errorf("%w: a=crypto:%s: key parameter does not start with inline", ErrBadSDP, v)
	}
	b64, rest, _ := strings.Cut(inline, "|")
	if strings.Contains(rest, ":") {
		return c, nil // an MKI: not supported, so not usable
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil || len(key) != suites[si].keyLen+suites[si].saltLen {
		return cryptoLine{}, fmt.Errorf("%w: a=crypto:%s: key of %s must be %d bytes of base64",
			ErrBadSDP, v, suites[si].name, suites[si].keyLen+suites[si].saltLen)
	}
	c.suite, c.key = si, sdesKey{suite: si, key: key}
	return c, nil
}

// formatCrypto writes the value of an a=crypto attribute for k.
func formatCrypto(tag int, k sdesKey) string {
	return strconv.Itoa(tag) + " " + suites[k.suite].name + " inline:" + base64.StdEncoding.EncodeToString(k.key)
}

// context makes an SRTP context for k. Decrypting contexts have replay
// protection on.
func (k sdesKey) context(decrypt bool) (*srtp.Context, error) {
	s := suites[k.suite]
	var opts []srtp.ContextOption
	if decrypt {
		opts = append(opts, srtp.SRTPReplayProtection(64), srtp.SRTCPReplayProtection(64))
	}
	c, err := srtp.CreateContext(k.key[:s.keyLen], k.key[s.keyLen:], s.profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("srtp context %s: %w", s.name, err)
	}
	return c, nil
}
