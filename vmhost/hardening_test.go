package vmhost_test

import (
	"testing"

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
