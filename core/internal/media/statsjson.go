package media

import (
	"net/netip"

	"github.com/umedge/umedge/core/internal/jsonenc"
)

// AppendJSON appends s as encoding/json.Marshal writes it
// (TestStatsJSONIsEncodingJSON), without reflection: every ended call's
// record carries its statistics, at thousands of calls a second.
func (s SessionStats) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"ID":`...)
	b = jsonenc.String(b, s.ID)
	b = append(b, `,"Legs":`...)
	if b, err = appendLegsJSON(b, &s.Legs); err != nil {
		return b, err
	}
	b = append(b, `,"Started":`...)
	if b, err = jsonenc.Time(b, s.Started); err != nil {
		return b, err
	}
	b = append(b, `,"LastPacket":`...)
	if b, err = jsonenc.Time(b, s.LastPacket); err != nil {
		return b, err
	}
	if len(s.Streams) > 0 {
		b = append(b, `,"Streams":[`...)
		for i := range s.Streams {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = s.Streams[i].appendJSON(b); err != nil {
				return b, err
			}
		}
		b = append(b, ']')
	}
	if s.Declined != 0 {
		b = append(b, `,"Declined":`...)
		b = jsonenc.Uint(b, s.Declined)
	}
	return append(b, '}'), nil
}

func (st *StreamStats) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"Index":`...)
	b = jsonenc.Int(b, int64(st.Index))
	b = append(b, `,"Media":`...)
	b = jsonenc.String(b, st.Media)
	b = append(b, `,"Proto":`...)
	b = jsonenc.String(b, st.Proto)
	b = append(b, `,"Primary":`...)
	b = jsonenc.Bool(b, st.Primary)
	b = append(b, `,"Legs":`...)
	b, err := appendLegsJSON(b, &st.Legs)
	if err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

func appendLegsJSON(b []byte, legs *[2]LegStats) ([]byte, error) {
	b = append(b, '[')
	var err error
	if b, err = legs[0].appendJSON(b); err != nil {
		return b, err
	}
	b = append(b, ',')
	if b, err = legs[1].appendJSON(b); err != nil {
		return b, err
	}
	return append(b, ']'), nil
}

func (l *LegStats) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"Local":`...)
	b = appendAddrPortJSON(b, l.Local)
	b = append(b, `,"Remote":`...)
	b = appendAddrPortJSON(b, l.Remote)
	b = append(b, `,"Codec":`...)
	b = jsonenc.String(b, l.Codec)
	b = append(b, `,"Secure":`...)
	b = jsonenc.Bool(b, l.Secure)
	for _, f := range [...]struct {
		key string
		v   uint64
	}{
		{`,"PacketsIn":`, l.PacketsIn}, {`,"PacketsOut":`, l.PacketsOut},
		{`,"BytesIn":`, l.BytesIn}, {`,"BytesOut":`, l.BytesOut}, {`,"Lost":`, l.Lost},
	} {
		b = append(b, f.key...)
		b = jsonenc.Uint(b, f.v)
	}
	b = append(b, `,"JitterMs":`...)
	b, err := jsonenc.Float(b, l.JitterMs)
	if err != nil {
		return b, err
	}
	for _, f := range [...]struct {
		key string
		v   uint64
	}{
		{`,"Strays":`, l.Strays}, {`,"SRTPFailures":`, l.SRTPFailures}, {`,"SRTPReplays":`, l.SRTPReplays},
		{`,"Unprotected":`, l.Unprotected}, {`,"Policed":`, l.Policed}, {`,"RTCPIn":`, l.RTCPIn},
		{`,"RTCPOut":`, l.RTCPOut}, {`,"RTCPOwn":`, l.RTCPOwn},
	} {
		b = append(b, f.key...)
		b = jsonenc.Uint(b, f.v)
	}
	b = append(b, `,"Path":`...)
	b = jsonenc.String(b, l.Path)
	b = append(b, `,"PacketsKernel":`...)
	b = jsonenc.Uint(b, l.PacketsKernel)
	b = append(b, `,"PacketsLatchedUserspace":`...)
	b = jsonenc.Uint(b, l.PacketsLatchedUserspace)
	b = append(b, `,"Ptime":`...)
	b = jsonenc.Int(b, int64(l.Ptime))
	b = append(b, `,"PtimeSDP":`...)
	b = jsonenc.Int(b, int64(l.PtimeSDP))
	b = append(b, `,"Repacketised":`...)
	b = jsonenc.Bool(b, l.Repacketised)
	for _, f := range [...]struct {
		key string
		v   uint64
	}{
		{`,"RepackIn":`, l.RepackIn}, {`,"RepackOut":`, l.RepackOut}, {`,"RepackIrregular":`, l.RepackIrregular},
	} {
		b = append(b, f.key...)
		b = jsonenc.Uint(b, f.v)
	}
	return append(b, '}'), nil
}

// appendAddrPortJSON appends ap as encoding/json writes a
// netip.AddrPort (its MarshalText, quoted; "" for the zero value).
func appendAddrPortJSON(b []byte, ap netip.AddrPort) []byte {
	if ap.Addr().Zone() != "" { // a zone is any text: quote it as a string
		return jsonenc.String(b, ap.String())
	}
	b = append(b, '"')
	b, _ = ap.AppendText(b) // never fails
	return append(b, '"')
}
