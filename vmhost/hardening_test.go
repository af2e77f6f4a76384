package vmhost_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vmhost"
)

// pathsInfo is a controller that reports a console socket, as qemu does.
type pathsInfo struct{ *fake.Controller }

func (p pathsInfo) Describe() vmhost.Description {
	return vmhost.Description{Name: "p", Paths: map[string]string{layout.PathConsole: "/somewhere/console"}}
}

// info reports the VM's paths, so clients need not build file names.
func TestInfoReportsPaths(t *testing.T) {
	h := serve(t, pathsInfo{fake.New(fake.Options{})})
	r, err := vmhost.NewClient(h.sock).Info()
	if err != nil {
		t.Fatal(err)
	}
	if r.Paths[layout.PathVMHostSocket] != h.sock || r.Paths[layout.PathConsole] != "/somewhere/console" {
		t.Errorf("info paths = %v, want the control socket %s and the backend's console", r.Paths, h.sock)
	}
}

// Every error reply carries a code a program can switch on.
func TestErrorCodes(t *testing.T) {
	h := serve(t, fake.New(fake.Options{StopDelay: time.Hour}))
	c := dialRaw(t, h.sock)
	cases := []struct{ line, code string }{
		{`{"method":`, vmhost.CodeBadRequest},
		{`{"method":"status","bogus":1}`, vmhost.CodeBadRequest},
		{`{"method":"stop","timeout_seconds":-3}`, vmhost.CodeBadRequest},
		{`{"method":"reboot-the-world"}`, vmhost.CodeUnknownMethod},
		{`{"method":"stop","mode":"acpi"}`, vmhost.CodeNotAvailable},
		{`{"method":"metrics"}`, vmhost.CodeNotAvailable},
		{`{"method":"stop","mode":"graceful","timeout_seconds":1}`, vmhost.CodeTimeout},
	}
	for _, tc := range cases {
		r := c.roundTrip(t, tc.line)
		if r.OK || r.Code != tc.code {
			t.Errorf("%s -> ok %v code %q (%s), want code %q", tc.line, r.OK, r.Code, r.Error, tc.code)
		}
	}
	big := dialRaw(t, h.sock)
	go big.Write([]byte(`{"method":"status","mode":"` + strings.Repeat("x", vmhost.MaxRequestSize) + `"}` + "\n"))
	line, err := big.r.ReadString('\n')
	if err != nil || !strings.Contains(line, `"code":"`+vmhost.CodeTooLarge+`"`) {
		t.Errorf("oversized line -> %q, %v; want code %s", line, err, vmhost.CodeTooLarge)
	}
	// The client hands the code on in RemoteError.
	_, err = vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: "nosuch"})
	var re *vmhost.RemoteError
	if !errors.As(err, &re) || re.Code != vmhost.CodeUnknownMethod {
		t.Errorf("client error %v, want a RemoteError with code %s", err, vmhost.CodeUnknownMethod)
	}
}

func TestErrorCodeOf(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("x"), vmhost.CodeFailed},
		{fmt.Errorf("stop: %w", context.DeadlineExceeded), vmhost.CodeTimeout},
		{fmt.Errorf("wrapped: %w", vmhost.WithCode(vmhost.CodeNotAvailable, errors.New("no"))), vmhost.CodeNotAvailable},
	}
	for _, c := range cases {
		if got := vmhost.ErrorCode(c.err); got != c.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if vmhost.WithCode(vmhost.CodeFailed, nil) != nil {
		t.Error("WithCode(code, nil) is not nil")
	}
	if err := vmhost.WithCode(vmhost.CodeFailed, errors.New("msg")); err.Error() != "msg" {
		t.Errorf("WithCode changed the message: %q", err)
	}
}
