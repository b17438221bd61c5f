package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// serveNG runs the media engine behind the subset of the ng protocol the
// load generator uses (offer, answer, delete, ping), so that umedge and
// rtpengine are driven by the same code.
func serveNG(listen string, portMin, portMax int, local netip.Addr, fastPath fastpath.Mode, sendPath string) error {
	e, err := media.New(media.Config{PortMin: portMin, PortMax: portMax, LatchWindow: 10e9, FastPath: fastPath, SendPath: sendPath},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer func() { _ = e.Close() }()
	c, err := net.ListenPacket("udp", listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	calls := map[string]*media.Session{}
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		cookie, body, ok := bytes.Cut(buf[:n], []byte(" "))
		if !ok {
			continue
		}
		v, _, err := bdecode(body)
		req, _ := v.(map[string]any)
		resp := map[string]any{"result": "ok"}
		if err != nil || req == nil {
			resp = map[string]any{"result": "error", "error-reason": "bad bencode"}
		} else {
			id, _ := req["call-id"].(string)
			sdpIn, _ := req["sdp"].(string)
			mu.Lock()
			s := calls[id]
			switch req["command"] {
			case "ping":
				resp["result"] = "pong"
			case "offer":
				if s == nil {
					b := media.LegProfile{Local: local, Security: media.SecurityRTP}
					if req["transport-protocol"] == "RTP/SAVP" {
						b.Security = media.SecuritySRTP
					}
					if s, err = e.NewSession(id, media.LegProfile{Local: local, Security: media.SecurityRTP}, b, nil); err == nil {
						calls[id] = s
					}
				}
				if err == nil {
					var out []byte
					out, err = s.Offer(media.SideA, []byte(sdpIn))
					resp["sdp"] = string(out)
				}
			case "answer":
				err = fmt.Errorf("unknown call %q", id)
				if s != nil {
					var out []byte
					out, err = s.Answer(media.SideB, []byte(sdpIn))
					resp["sdp"] = string(out)
				}
			case "delete":
				if s != nil {
					s.Close()
					delete(calls, id)
				}
			default:
				err = fmt.Errorf("unknown command %v", req["command"])
			}
			mu.Unlock()
			if err != nil {
				resp = map[string]any{"result": "error", "error-reason": err.Error()}
			}
		}
		var out bytes.Buffer
		out.Write(cookie)
		out.WriteByte(' ')
		bencode(&out, resp)
		if _, err := c.WriteTo(out.Bytes(), from); err != nil {
			return err
		}
	}
}
