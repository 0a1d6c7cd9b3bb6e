package daemon

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// In debug mode the profiler answers under /debug/pprof/ and every other
// path still reaches the API handler unchanged.
func TestWithProfiler(t *testing.T) {
	var apiPaths []string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiPaths = append(apiPaths, r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	h := withProfiler(api)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("/debug/pprof/: %d %.80q", rec.Code, rec.Body.String())
	}
	for _, p := range []string{"/_ping", "/v1.51/containers//json", "/debug/pprofx", "/debug/vars"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("%s did not reach the API: %d", p, rec.Code)
		}
	}
	if len(apiPaths) != 4 || apiPaths[1] != "/v1.51/containers//json" {
		t.Errorf("API saw %q", apiPaths)
	}
}
