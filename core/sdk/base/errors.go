package base

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable means the plugin process cannot be reached: it crashed,
// exited or was never started. The host restarts it; the core answers the
// affected calls with 503 and Retry-After.
var ErrUnavailable = errors.New("plugin: unavailable")

// ErrFailed wraps an error a plugin returned that the SDK has no sentinel
// for; its text is the plugin's message.
var ErrFailed = errors.New("plugin")

// ErrorCode ties a sentinel error to the gRPC code that carries it across
// the process boundary.
type ErrorCode struct {
	Err  error
	Code codes.Code
}

// errorCodes is the one ordered table, shared by every plugin kind, that
// drives both directions, so that errors.Is holds in the host for errors
// made in the plugin process. Kind packages pass their own entries to
// ToStatus and FromStatus as extra; those are consulted first.
var errorCodes = []ErrorCode{
	{Err: context.Canceled, Code: codes.Canceled},
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded},
	{Err: ErrUnavailable, Code: codes.Unavailable},
}

// ToStatus turns an error returned by a plugin implementation into the gRPC
// status error a server method returns. The first table entry (extra, then
// the shared entries) whose Err matches by errors.Is gives the code; any
// other error becomes codes.Unknown. It returns nil for nil.
func ToStatus(err error, extra ...ErrorCode) error {
	if err == nil {
		return nil
	}
	for _, tab := range [][]ErrorCode{extra, errorCodes} {
		for _, e := range tab {
			if errors.Is(err, e.Err) {
				return status.Error(e.Code, err.Error())
			}
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromStatus turns an error returned by a gRPC client stub into the error
// the host sees. A code found in the table (extra first) becomes an error
// that wraps that entry's sentinel, so errors.Is works; any other code
// becomes an opaque error carrying the plugin's message. An error that is
// no gRPC status is returned unchanged. It returns nil for nil.
func FromStatus(err error, extra ...ErrorCode) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, tab := range [][]ErrorCode{extra, errorCodes} {
		for _, e := range tab {
			if st.Code() != e.Code {
				continue
			}
			if st.Message() == e.Err.Error() {
				return e.Err
			}
			return fmt.Errorf("%w: %s", e.Err, st.Message())
		}
	}
	if st.Code() == codes.Unknown {
		return fmt.Errorf("%w: %s", ErrFailed, st.Message())
	}
	return fmt.Errorf("%w: %s (grpc %s)", ErrFailed, st.Message(), st.Code())
}
