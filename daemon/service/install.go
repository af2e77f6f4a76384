package service

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Manager installs the service for the current OS.
type Manager struct {
	// Params fill the unit or plist.
	Params Params
	// UserHome is the user's home directory.
	UserHome string
	// Load runs systemctl or launchctl after writing; false only writes.
	Load bool
}

// Path is the file the service lives in on this OS.
func (m *Manager) Path() string {
	if runtime.GOOS == "darwin" {
		return LaunchdPlistPath(m.UserHome)
	}
	return SystemdUnitPath(m.UserHome)
}

// Content is what Install writes on this OS.
func (m *Manager) Content() string {
	if runtime.GOOS == "darwin" {
		return LaunchdPlist(m.Params)
	}
	return SystemdUnit(m.Params)
}

// Inspect says how to look at the installed service.
func (m *Manager) Inspect() []string {
	if runtime.GOOS == "darwin" {
		return []string{
			"launchctl print gui/" + strconv.Itoa(os.Getuid()) + "/" + LaunchdLabel,
			"tail -f " + m.Params.DaemonLog,
		}
	}
	return []string{"systemctl --user status " + SystemdUnitName, "journalctl --user -u " + SystemdUnitName + " -f"}
}

// Install writes the file and, with Load, loads and starts the service.
func (m *Manager) Install(ctx context.Context) error {
	p := m.Path()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	if err := os.WriteFile(p, []byte(m.Content()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if !m.Load {
		return nil
	}
	if runtime.GOOS == "darwin" {
		domain := "gui/" + strconv.Itoa(os.Getuid())
		_ = run(ctx, "launchctl", "bootout", domain+"/"+LaunchdLabel)
		return run(ctx, "launchctl", "bootstrap", domain, p)
	}
	if err := run(ctx, "systemctl", "--user", "daemon-reload"); err != nil {
		return err
	}
	return run(ctx, "systemctl", "--user", "enable", "--now", SystemdUnitName)
}

// Uninstall stops and unloads the service (the VMs keep running) and
// removes the file.
func (m *Manager) Uninstall(ctx context.Context) error {
	p := m.Path()
	var loadErr error
	if m.Load {
		if runtime.GOOS == "darwin" {
			loadErr = run(ctx, "launchctl", "bootout", "gui/"+strconv.Itoa(os.Getuid())+"/"+LaunchdLabel)
		} else {
			loadErr = run(ctx, "systemctl", "--user", "disable", "--now", SystemdUnitName)
		}
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	if m.Load && runtime.GOOS != "darwin" {
		_ = run(ctx, "systemctl", "--user", "daemon-reload")
	}
	return loadErr
}

// Status reports whether the file exists and what the service manager
// says about it.
func (m *Manager) Status(ctx context.Context) (installed bool, state string) {
	if _, err := os.Stat(m.Path()); err != nil {
		return false, "not installed"
	}
	var out []byte
	var err error
	if runtime.GOOS == "darwin" {
		out, err = exec.CommandContext(ctx, "launchctl", "print", "gui/"+strconv.Itoa(os.Getuid())+"/"+LaunchdLabel).CombinedOutput()
		if err == nil {
			return true, "loaded"
		}
		return true, "not loaded"
	}
	out, _ = exec.CommandContext(ctx, "systemctl", "--user", "is-active", SystemdUnitName).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if s == "" {
		s = "unknown (systemctl --user did not answer)"
	}
	return true, s
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
