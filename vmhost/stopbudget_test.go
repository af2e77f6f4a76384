package vmhost_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vmhost"
)

func TestStopBudget(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{30 * time.Second, 29 * time.Second},
		{5 * time.Second, 4 * time.Second},
		{4 * time.Second, 3200 * time.Millisecond},
		{1 * time.Second, 800 * time.Millisecond},
	} {
		if got := vmhost.StopBudget(c.timeout); got != c.want {
			t.Errorf("StopBudget(%s) = %s, want %s", c.timeout, got, c.want)
		}
	}
}

// callWithin sends req with a client deadline of exactly d after sending,
// as masterblaster's client does (one deadline per call), and fails the
// test when the reply does not arrive by then.
func callWithin(t *testing.T, sock string, d time.Duration, req vmhost.Request) (*vmhost.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := vmhost.NewClient(sock).Call(ctx, req)
	if errors.Is(err, vmhost.ErrNoAnswer) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s with timeout_seconds %d: no answer within %s: %v", req.Method, req.TimeoutSeconds, d, err)
	}
	return r, err
}

// A VM that does not go down by itself is killed within the stop's
// timeout, and the reply (stopped, by kill) reaches a client whose
// deadline is that timeout, for short and long timeouts.
func TestStopAnswersWithinItsTimeout(t *testing.T) {
	for _, secs := range []int{2, 6} {
		vm := fake.New(fake.Options{StopDelay: time.Hour})
		h := serve(t, vm)
		r, err := callWithin(t, h.sock, time.Duration(secs)*time.Second, vmhost.Request{Method: vmhost.MethodStop, TimeoutSeconds: secs})
		if err != nil || r.State != vmhost.StateStopped || r.StoppedBy != vmhost.ModeKill {
			t.Errorf("stop %d s of a VM that ignores it = %+v, %v; want stopped by kill", secs, r, err)
		}
		if err := vm.Wait(); err != nil {
			t.Errorf("Wait after a stop that had to kill = %v, want nil (the user asked for it)", err)
		}
	}
}

// A second stop waiting behind a slow first one still answers within its
// own timeout.
func TestQueuedStopAnswersWithinItsTimeout(t *testing.T) {
	h := serve(t, stuck{fake.New(fake.Options{}), make(chan struct{})})
	first := make(chan error, 1)
	go func() {
		_, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodStop, TimeoutSeconds: 3})
		first <- err
	}()
	r, err := callWithin(t, h.sock, 2*time.Second, vmhost.Request{Method: vmhost.MethodStop, TimeoutSeconds: 2})
	var re *vmhost.RemoteError
	if !errors.As(err, &re) || re.Code != vmhost.CodeTimeout {
		t.Errorf("stop queued behind a stuck one = %+v, %v; want a timeout error", r, err)
	}
	if err := <-first; !errors.As(err, &re) || re.Code != vmhost.CodeTimeout {
		t.Errorf("stop of a backend that never returns = %v; want a timeout error in time", err)
	}
}

// stuck is a controller whose stop never returns, as a wedged backend.
type stuck struct {
	*fake.Controller
	never chan struct{}
}

func (s stuck) StopMode(ctx context.Context, _ time.Duration, _ string) (vmhost.StopResult, error) {
	<-s.never
	return vmhost.StopResult{}, nil
}
