package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
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
// the error's class. The message is err.Error() on one line, unless it is
// Docker's own multi-line wording (MultiLine).
func writeError(w http.ResponseWriter, err error) {
	msg := err.Error()
	var ml MultiLine
	if !errors.As(err, &ml) {
		msg = strings.ReplaceAll(msg, "\n", " ")
	}
	msg = strings.TrimSpace(msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf(err))
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// MultiLine is implemented by an error whose text is dockerd's own
// multi-line wording (moby's "invalid endpoint settings:\n..."): the API
// answers it with its line breaks, as dockerd does, because the docker CLI
// prints the message verbatim and scripts match it. Every other message is
// written on one line.
type MultiLine interface{ MultiLine() }

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

// decodeJSON decodes a request body into v, as Docker's ReadJSON does: a
// body must come as application/json (a request without a body may leave
// the Content-Type out), and nothing may follow the JSON value. An empty
// body leaves v as it is when allowEmpty; bad JSON is ErrInvalid with a
// one-line message.
func decodeJSON(r *http.Request, v any, allowEmpty bool) error {
	if err := checkJSONContentType(r); err != nil {
		return err
	}
	return decodeJSONBody(io.LimitReader(r.Body, 1<<20), v, allowEmpty)
}

// checkJSONContentType refuses a request body that is not declared as
// application/json (Docker's CheckForJSON, with its wording).
func checkJSONContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return apiErr(model.ErrInvalid, "malformed Content-Type header (%s): %s", ct, err)
	}
	if mt != "application/json" {
		return apiErr(model.ErrInvalid, "unsupported Content-Type header (%s): must be 'application/json'", ct)
	}
	return nil
}

// decodeJSONBody decodes one JSON value from body into v and refuses
// anything after it but white space.
func decodeJSONBody(body io.Reader, v any, allowEmpty bool) error {
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if allowEmpty {
				return nil
			}
			return apiErr(model.ErrInvalid, "invalid JSON: empty request body")
		}
		return apiErr(model.ErrInvalid, "invalid JSON: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	if dec.More() {
		return apiErr(model.ErrInvalid, "unexpected content after JSON")
	}
	// More stops at a closing bracket; any byte left but white space is
	// content after the value.
	rest, _ := io.ReadAll(io.MultiReader(dec.Buffered(), body))
	if len(bytes.TrimSpace(rest)) > 0 {
		return apiErr(model.ErrInvalid, "unexpected content after JSON")
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
