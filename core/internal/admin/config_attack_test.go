package admin

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConfigGuardAttacks: the token only in the Authorization header, the
// same origin, a type no form or simple fetch sends (parameters allowed),
// and no way to GET the file around the token by a path variant.
func TestConfigGuardAttacks(t *testing.T) {
	f := &fakeConfigFile{data: []byte("secret-paths")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})
	base := "http://" + s.Addr()
	tests := []struct {
		name, method, path string
		header             map[string][]string
		want               int
	}{
		{"token in the query", http.MethodGet, ConfigPath + "?token=" + cfgToken, nil, http.StatusUnauthorized},
		{"token as access_token", http.MethodGet, ConfigPath + "?access_token=" + cfgToken, nil, http.StatusUnauthorized},
		{"token put in the query", http.MethodPut, ConfigPath + "?token=" + cfgToken, map[string][]string{"Content-Type": {"application/toml"}}, http.StatusUnauthorized},
		{"basic scheme", http.MethodGet, ConfigPath, map[string][]string{"Authorization": {"Basic " + cfgToken}}, http.StatusUnauthorized},
		{"token with a suffix", http.MethodGet, ConfigPath, map[string][]string{"Authorization": {"Bearer " + cfgToken + "x"}}, http.StatusUnauthorized},
		{"token prefix", http.MethodGet, ConfigPath, map[string][]string{"Authorization": {"Bearer " + cfgToken[:len(cfgToken)-1]}}, http.StatusUnauthorized},
		{"bearer scheme in lower case", http.MethodGet, ConfigPath, map[string][]string{"Authorization": {"bearer " + cfgToken}}, http.StatusOK},
		{"rebound host", http.MethodGet, ConfigPath, map[string][]string{"Authorization": {"Bearer " + cfgToken}, "Host": {"evil.example"}}, http.StatusMisdirectedRequest},
		{"origin null", http.MethodPut, ConfigPath, map[string][]string{"Origin": {"null"}, "Content-Type": {"application/toml"}}, http.StatusForbidden},
		{"origin https", http.MethodPut, ConfigPath, map[string][]string{"Origin": {"https://" + s.Addr()}, "Content-Type": {"application/toml"}}, http.StatusForbidden},
		{"same-site fetch", http.MethodPut, ConfigPath, map[string][]string{"Sec-Fetch-Site": {"same-site"}, "Content-Type": {"application/toml"}}, http.StatusForbidden},
		{"cross-site fetch", http.MethodPut, ConfigPath, map[string][]string{"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"application/toml"}}, http.StatusForbidden},
		{"text/plain with charset", http.MethodPut, ConfigPath, map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}, http.StatusUnsupportedMediaType},
		{"multipart form", http.MethodPut, ConfigPath, map[string][]string{"Content-Type": {"multipart/form-data; boundary=x"}}, http.StatusUnsupportedMediaType},
		{"two types", http.MethodPut, ConfigPath, map[string][]string{"Content-Type": {"application/toml", "text/plain"}}, http.StatusUnsupportedMediaType},
		{"type with a broken parameter", http.MethodPut, ConfigPath, map[string][]string{"Content-Type": {"application/toml; charset"}}, http.StatusUnsupportedMediaType},
		{"toml with charset", http.MethodPut, ConfigPath, map[string][]string{"Content-Type": {"application/toml; charset=utf-8"}}, http.StatusOK},
		{"toml in capitals", http.MethodPut, ConfigPath, map[string][]string{"Content-Type": {"Application/TOML"}}, http.StatusOK},
		// Path variants reach no handler that serves the file.
		{"trailing slash", http.MethodGet, ConfigPath + "/", nil, http.StatusNotFound},
		{"upper case", http.MethodGet, "/CONFIG", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader("new"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.method == http.MethodPut && tt.header["Authorization"] == nil && !strings.Contains(tt.path, "token=") {
				req.Header.Set("Authorization", "Bearer "+cfgToken)
			}
			for k, vs := range tt.header {
				if k == "Host" {
					req.Host = vs[0]
					continue
				}
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("= %d %q, want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want != http.StatusOK && bytes.Contains(body, []byte("secret-paths")) {
				t.Fatalf("a refused request got the file: %q", body)
			}
		})
	}
}

// TestConfigUploadClientGone: a client that goes away half way through
// its body frees the upload slot at once: nothing is replaced and the
// next upload goes through (no 409 for the idle time).
func TestConfigUploadClientGone(t *testing.T) {
	f := &fakeConfigFile{data: []byte("old")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})
	for _, head := range []string{"Content-Length: 1000\r\n", "Transfer-Encoding: chunked\r\n"} {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		body := "[log]\n"
		if strings.Contains(head, "chunked") {
			body = "3e8\r\n[log]\n"
		}
		fmt.Fprintf(c, "PUT /config HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/toml\r\n%s\r\n%s", s.Addr(), cfgToken, head, body)
		time.Sleep(50 * time.Millisecond)
		c.Close()
		deadline := time.Now().Add(2 * time.Second)
		for {
			code, text := doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/toml", body: strings.NewReader("new")})
			if code == http.StatusOK {
				break
			}
			if code != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("%sPUT after a client left half way = %d %q, want 200 within 2 s", head, code, text)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, n := f.state(); n != 2 {
		t.Fatalf("%d replaces, want the 2 whole uploads only", n)
	}
}

// rawPut sends a PUT /config with the token, head's extra header lines
// and body as they are, and returns the answer (or what came before the
// server closed).
func rawPut(t *testing.T, s *Server, head, body string) string {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /config HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/toml\r\n%s\r\n%s", s.Addr(), cfgToken, head, body)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, _ := io.ReadAll(c)
	return string(answer)
}

// TestConfigUploadBadBody: a body the client framed wrong is the client's
// fault (400), not the server's (500), and nothing is replaced.
func TestConfigUploadBadBody(t *testing.T) {
	f := &fakeConfigFile{data: []byte("old")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})
	tests := []struct{ name, head, body string }{
		{"chunk size not hex", "Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"},
		{"chunk longer than sent", "Transfer-Encoding: chunked\r\nConnection: close\r\n", "100\r\n[log]\n"},
		{"chunk without its CRLF", "Transfer-Encoding: chunked\r\n", "3\r\nabcXY0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "chunk longer than sent" {
				// the client half-closes: the server sees the body end early
				c, err := net.Dial("tcp", s.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				fmt.Fprintf(c, "PUT /config HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/toml\r\n%s\r\n%s", s.Addr(), cfgToken, tt.head, tt.body)
				_ = c.(*net.TCPConn).CloseWrite()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				answer, _ := io.ReadAll(c)
				if !strings.HasPrefix(string(answer), "HTTP/1.1 400") {
					t.Fatalf("answer %q, want 400", answer)
				}
				return
			}
			if answer := rawPut(t, s, tt.head, tt.body); !strings.HasPrefix(answer, "HTTP/1.1 400") {
				t.Fatalf("answer %q, want 400", answer)
			}
		})
	}
	if got, n := f.state(); string(got) != "old" || n != 0 {
		t.Fatalf("file = %q after %d replaces", got, n)
	}
}
