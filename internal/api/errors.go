package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/vxnet/vxnet/internal/model"
)

// statusOf maps an error to its HTTP status code by its model class. This is
// the one place where error classes become status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, model.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, model.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, model.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, model.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, model.ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError writes Docker's error body {"message": ...} with the status of
// the error's class. The message is err.Error() on one line.
func writeError(w http.ResponseWriter, err error) {
	msg := strings.TrimSpace(strings.ReplaceAll(err.Error(), "\n", " "))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf(err))
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// classError is an error with the API's own message that still belongs to a
// model class, so its text carries no ": not found" style suffix.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.class }

func apiErr(class error, format string, args ...any) error {
	return &classError{msg: fmt.Sprintf(format, args...), class: class}
}

// decodeJSON decodes a request body into v. An empty body leaves v as it is
// when allowEmpty; bad JSON is ErrInvalid with a one-line message.
func decodeJSON(r *http.Request, v any, allowEmpty bool) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if allowEmpty {
				return nil
			}
			return apiErr(model.ErrInvalid, "invalid JSON: empty request body")
		}
		return apiErr(model.ErrInvalid, "invalid JSON: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// boolParam reads a Docker boolean query parameter: "", "0", "no", "false"
// and "none" are false, anything else is true.
func boolParam(r *http.Request, name string) bool {
	switch strings.ToLower(strings.TrimSpace(r.URL.Query().Get(name))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}
