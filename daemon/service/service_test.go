package service

import (
	"context"
	"encoding/xml"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var goldenParams = Params{
	MB:        "/home/dev/go/bin/mb",
	Home:      "/home/dev/.mb-test",
	Path:      "/usr/local/bin:/usr/bin:/bin",
	DaemonLog: "/home/dev/.mb-test/daemon.log",
	LogFile:   "/home/dev/.mb-test/launchd.log",
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestSystemdUnitGolden(t *testing.T) {
	p := goldenParams
	p.DaemonLog, p.LogFile = "", ""
	unit := SystemdUnit(p)
	golden(t, "mb.service", unit)
	for _, want := range []string{"KillMode=process", "Restart=on-failure", "ExecStart=/home/dev/go/bin/mb daemon --foreground", `Environment="PATH=/usr/local/bin:/usr/bin:/bin"`} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
}

func TestSystemdUnitQuotesPaths(t *testing.T) {
	unit := SystemdUnit(Params{MB: "/opt/my tools/mb", Path: "/usr/bin", Home: "/home/a b/100%"})
	if !strings.Contains(unit, `ExecStart="/opt/my tools/mb" daemon --foreground`) {
		t.Errorf("unquoted ExecStart:\n%s", unit)
	}
	if !strings.Contains(unit, `Environment="MB_HOME=/home/a b/100%%"`) {
		t.Errorf("unescaped MB_HOME:\n%s", unit)
	}
}

func TestLaunchdPlistGolden(t *testing.T) {
	plist := LaunchdPlist(goldenParams)
	golden(t, "dev.mbvm.mb.plist", plist)
	// It is well-formed XML with the keys that keep VMs alive.
	dec := xml.NewDecoder(strings.NewReader(plist))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("plist is not well-formed XML: %v", err)
		}
	}
	for _, want := range []string{"<key>AbandonProcessGroup</key>\n\t<true/>", "<key>KeepAlive</key>", "<string>--foreground</string>", "<key>PATH</key>"} {
		if !strings.Contains(plist, want) {
			t.Errorf("plist lacks %q", want)
		}
	}
	if p := LaunchdPlist(Params{MB: "/a&b/mb", Path: "/bin"}); !strings.Contains(p, "<string>/a&amp;b/mb</string>") {
		t.Errorf("plist does not escape XML:\n%s", p)
	}
}

// systemd-analyze verify accepts the unit (when the tool is installed).
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool := testenv.Tool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	// verify checks that ExecStart exists and is executable.
	mb := filepath.Join(dir, "mb")
	if err := os.WriteFile(mb, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := SystemdUnit(Params{MB: mb, Path: DefaultPath()})
	if complaints := verifyUnit(t, tool, dir, unit); len(complaints) > 0 {
		t.Errorf("systemd-analyze verify complains about the unit:\n%s", strings.Join(complaints, "\n"))
	}
	// The check itself catches a broken unit.
	broken := strings.Replace(unit, "KillMode=process", "KillMode=bogus", 1)
	if complaints := verifyUnit(t, tool, dir, broken); len(complaints) == 0 {
		t.Error("systemd-analyze verify found nothing wrong with KillMode=bogus: the check is blind")
	}
}

// verifyUnit runs systemd-analyze verify on unit and returns the lines
// that complain about it.
func verifyUnit(t *testing.T, tool, dir, unit string) []string {
	t.Helper()
	unitPath := filepath.Join(dir, SystemdUnitName)
	if err := os.WriteFile(unitPath, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(context.Background(), tool, "verify", "--user", unitPath).CombinedOutput()
	if err != nil && (strings.Contains(string(out), "Failed to initialize manager") || strings.Contains(string(out), "RuntimeDirectory")) {
		// Without a user session --user cannot run; the system manager
		// checks the same syntax.
		out, err = exec.CommandContext(context.Background(), tool, "verify", unitPath).CombinedOutput()
	}
	var complaints []string
	if err != nil {
		complaints = append(complaints, "exit: "+err.Error())
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, SystemdUnitName) {
			complaints = append(complaints, line)
		}
	}
	return complaints
}

func TestDefaultPathFindsQEMU(t *testing.T) {
	q := testenv.Tool(t, "qemu-system-x86_64", "qemu-system-x86")
	dir, _ := filepath.Abs(filepath.Dir(q))
	if !strings.Contains(":"+DefaultPath()+":", ":"+dir+":") {
		t.Errorf("DefaultPath %q lacks qemu's directory %s", DefaultPath(), dir)
	}
}

func TestInstallWritesWithoutLoading(t *testing.T) {
	userHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", "")
	m := &Manager{Params: goldenParams, UserHome: userHome}
	if err := m.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(m.Path())
	if err != nil || string(got) != m.Content() {
		t.Fatalf("installed file %s: %v", m.Path(), err)
	}
	if installed, _ := m.Status(context.Background()); !installed {
		t.Error("Status says not installed")
	}
	if err := m.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Path()); !os.IsNotExist(err) {
		t.Errorf("file still there after Uninstall: %v", err)
	}
}
