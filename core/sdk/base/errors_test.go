package base_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/umedge/umedge/core/sdk/base"
)

var errCustom = errors.New("kind: custom")

func TestStatusRoundTrip(t *testing.T) {
	extra := []base.ErrorCode{{Err: errCustom, Code: codes.NotFound}}
	tests := []struct {
		name     string
		give     error
		wantCode codes.Code
		wantIs   error  // nil: matches no sentinel
		wantText string // in the host's error text
	}{
		{name: "canceled", give: context.Canceled, wantCode: codes.Canceled, wantIs: context.Canceled},
		{name: "wrapped canceled", give: fmt.Errorf("look up gateway: %w", context.Canceled),
			wantCode: codes.Canceled, wantIs: context.Canceled, wantText: "look up gateway"},
		{name: "deadline", give: context.DeadlineExceeded, wantCode: codes.DeadlineExceeded, wantIs: context.DeadlineExceeded},
		{name: "unavailable", give: base.ErrUnavailable, wantCode: codes.Unavailable, wantIs: base.ErrUnavailable},
		{name: "extra entry", give: fmt.Errorf("%w: number 12", errCustom), wantCode: codes.NotFound,
			wantIs: errCustom, wantText: "number 12"},
		{name: "plain error", give: errors.New("disk full"), wantCode: codes.Unknown, wantText: "plugin: disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := base.ToStatus(tt.give, extra...)
			if got := status.Code(st); got != tt.wantCode {
				t.Fatalf("ToStatus() code = %v, want %v", got, tt.wantCode)
			}
			got := base.FromStatus(st, extra...)
			if got == nil {
				t.Fatal("FromStatus() = nil")
			}
			for _, s := range []error{context.Canceled, context.DeadlineExceeded, base.ErrUnavailable, errCustom} {
				if is := errors.Is(got, s); is != (s == tt.wantIs) {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", got, s, is, !is)
				}
			}
			if !strings.Contains(got.Error(), tt.wantText) {
				t.Errorf("FromStatus() = %q, want it to contain %q", got, tt.wantText)
			}
		})
	}
}

func TestStatusEdges(t *testing.T) {
	if err := base.ToStatus(nil); err != nil {
		t.Errorf("ToStatus(nil) = %v, want nil", err)
	}
	if err := base.FromStatus(nil); err != nil {
		t.Errorf("FromStatus(nil) = %v, want nil", err)
	}
	plain := errors.New("not a status")
	if err := base.FromStatus(plain); err != plain { //nolint:errorlint // identity is the point
		t.Errorf("FromStatus(non-status) = %v, want it unchanged", err)
	}
	// Without the extra table, the kind's code means nothing special.
	err := base.FromStatus(base.ToStatus(errCustom))
	if errors.Is(err, errCustom) {
		t.Errorf("FromStatus() without extra = %v, want no errCustom", err)
	}
	// Transport failures of a crashed plugin map to ErrUnavailable.
	err = base.FromStatus(status.Error(codes.Unavailable, "error reading from server: EOF"))
	if !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("FromStatus(Unavailable) = %v, want errors.Is ErrUnavailable", err)
	}
	err = base.FromStatus(status.Error(codes.Internal, "boom"))
	if want := "plugin: boom (grpc Internal)"; err.Error() != want {
		t.Errorf("FromStatus(Internal) = %q, want %q", err, want)
	}
}
