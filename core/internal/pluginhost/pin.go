package pluginhost

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// binaryPath returns the path of s.Binary inside dir. Binary must be a
// plain file name, so a spec can never point outside the plugin directory.
func binaryPath(dir, binary string) (string, error) {
	if binary == "" || binary == "." || binary == ".." ||
		strings.ContainsAny(binary, `/\`) || filepath.Base(binary) != binary {
		return "", fmt.Errorf("%w: %q", errBadBinary, binary)
	}
	return filepath.Join(dir, binary), nil
}

// pin returns the SHA-256 that s.Binary must have: Spec.SHA256 when set,
// else the entry for the binary in the sums file.
func (h *Host) pin(s Spec) ([]byte, error) {
	if s.SHA256 != "" {
		sum, err := decodeSum(s.SHA256)
		if err != nil {
			return nil, fmt.Errorf("sha256 of %s: %w", s.Binary, err)
		}
		return sum, nil
	}
	if h.cfg.SHA256Sums != "" {
		sums, err := readSums(h.cfg.SHA256Sums)
		if err != nil {
			return nil, err
		}
		if sum, ok := sums[s.Binary]; ok {
			return sum, nil
		}
		return nil, fmt.Errorf("%w: %s has no entry in %s and the spec has no sha256",
			ErrNoPin, s.Binary, h.cfg.SHA256Sums)
	}
	return nil, fmt.Errorf("%w: %s (set sha256 or a sha256sums file)", ErrNoPin, s.Binary)
}

func decodeSum(s string) ([]byte, error) {
	sum, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("%w: %q", errBadPin, s)
	}
	return sum, nil
}

// readSums reads a file in sha256sum(1) format ("<hex>  <name>" or
// "<hex> *<name>" per line) and returns the sums by base file name.
func readSums(path string) (map[string][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sha256sums: %w", err)
	}
	sums, err := parseSums(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse sha256sums %s: %w", path, err)
	}
	return sums, nil
}

func parseSums(r io.Reader) (map[string][]byte, error) {
	sums := make(map[string][]byte)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hexSum, name, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: want \"<sha256>  <file>\"", ErrBadSums, n)
		}
		sum, err := decodeSum(hexSum)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		name = strings.TrimPrefix(strings.TrimLeft(name, " "), "*")
		if name == "" {
			return nil, fmt.Errorf("%w: line %d: no file name", ErrBadSums, n)
		}
		sums[filepath.Base(name)] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sums, nil
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hs := sha256.New()
	if _, err := io.Copy(hs, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(hs.Sum(nil)), nil
}
