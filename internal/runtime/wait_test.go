package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A wait that containerd ended with an error (its server's deadline, which
// can pass a moment before the caller's context says so) is not an exit:
// stop must not take it for one and return while the task runs on.
func TestWaitErrorIsNotAnExit(t *testing.T) {
	deadline := status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	es := containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, deadline)
	if code, err := exitOf(context.Background(), "c", *es); err == nil {
		t.Fatalf("a failed wait gave exit %d and no error", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := exitOf(ctx, "c", *es); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want the context's error", err)
	}
	if code, err := exitOf(context.Background(), "c", *containerd.NewExitStatus(137, time.Now(), nil)); err != nil || code != 137 {
		t.Fatalf("exit 137: got %d, %v", code, err)
	}
}
