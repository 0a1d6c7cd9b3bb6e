package model

import "errors"

// Error classes that callers branch on. Every layer wraps one of these with
// its own words; the API layer maps them to HTTP status codes in one place
// (400, 403, 404, 409, 503).
var (
	ErrInvalid     = errors.New("invalid argument")
	ErrForbidden   = errors.New("forbidden")
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("unavailable")
)
