package sipload

import "errors"

var (
	// ErrInvalidConfig means a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("sipload: invalid config")
	// ErrBadCSV means an injection file is not in the mix's format.
	ErrBadCSV = errors.New("sipload: bad injection file")

	errFraming = errors.New("sipload: cannot frame the stream")
)
