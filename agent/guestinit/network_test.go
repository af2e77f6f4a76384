package guestinit

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestEthernetInterfaces(t *testing.T) {
	sys := t.TempDir()
	for name, typ := range map[string]string{
		"lo":     "772\n",
		"eth1":   "1\n",
		"eth0":   "1\n",
		"sit0":   "776\n",
		"wwan0":  "519\n",
		"enp0s3": "1\n",
	} {
		dir := filepath.Join(sys, "class/net", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "type"), []byte(typ), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := ethernetInterfaces(sys)
	if want := []string{"enp0s3", "eth0", "eth1"}; !slices.Equal(got, want) {
		t.Errorf("ethernetInterfaces = %q, want %q", got, want)
	}
	if got := ethernetInterfaces(t.TempDir()); len(got) != 0 {
		t.Errorf("no interfaces: got %q", got)
	}
}

func TestShutdownLine(t *testing.T) {
	for _, c := range []struct {
		a      Action
		reason string
		want   string
	}{
		{PowerOff, "acpi button", "mb-agent: power off (reason: acpi button)"},
		{Reboot, "signal SIGINT", "mb-agent: reboot (reason: signal SIGINT)"},
		{Halt, "signal SIGUSR1", "mb-agent: halt (reason: signal SIGUSR1)"},
	} {
		if got := ShutdownLine(c.a, c.reason); got != c.want {
			t.Errorf("ShutdownLine(%v, %q) = %q, want %q", c.a, c.reason, got, c.want)
		}
	}
}
