// Package service writes the user service that keeps the mb daemon running:
// a systemd user unit on Linux, a launchd agent plist on macOS. Both run
// `mb daemon --foreground`, restart it when it fails, and leave the VMs
// alone when the service stops: systemd's default KillMode=control-group
// would kill every vmhost and QEMU in the unit's cgroup (setsid does not
// leave a cgroup), so the unit uses KillMode=process as containerd's does;
// the plist sets AbandonProcessGroup.
package service

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Unit and plist names.
const (
	SystemdUnitName = "mb.service"
	LaunchdLabel    = "dev.mbvm.mb"
)

// Params are what the unit or plist contains.
type Params struct {
	// MB is the absolute path of the mb binary.
	MB string
	// Home is $MB_HOME when the user set one ("" for the default).
	Home string
	// Path is the PATH the daemon runs with; it must find qemu.
	Path string
	// DaemonLog is the daemon's own log file (macOS: launchd has no journal,
	// so the daemon writes its size-capped log itself).
	DaemonLog string
	// LogFile is where launchd sends the daemon's stdout and stderr (macOS).
	LogFile string
}

// DefaultPath builds a PATH that finds qemu: the directories of the qemu
// binaries on the caller's PATH first, then the usual system ones.
func DefaultPath() string {
	var dirs []string
	add := func(d string) {
		for _, x := range dirs {
			if x == d {
				return
			}
		}
		dirs = append(dirs, d)
	}
	for _, q := range []string{"qemu-system-x86_64", "qemu-system-aarch64", "qemu-img"} {
		if p, err := exec.LookPath(q); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				add(filepath.Dir(abs))
			}
		}
	}
	for _, d := range []string{"/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
		add(d)
	}
	return strings.Join(dirs, ":")
}

// systemdQuote quotes one ExecStart word when it needs it.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}

// envQuote quotes an Environment= assignment.
func envQuote(kv string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `%`, `%%`)
	return `"` + r.Replace(kv) + `"`
}

// SystemdUnit renders the systemd user unit.
func SystemdUnit(p Params) string {
	var b strings.Builder
	b.WriteString("# Written by `mb service install`; remove with `mb service uninstall`.\n")
	b.WriteString("[Unit]\n")
	b.WriteString("Description=mb daemon: supervises the mb VMs of this user\n")
	b.WriteString("Documentation=https://github.com/mbvm/mb\n")
	b.WriteString("After=network.target\n\n")
	b.WriteString("[Service]\n")
	b.WriteString("Type=simple\n")
	fmt.Fprintf(&b, "ExecStart=%s daemon --foreground\n", systemdQuote(p.MB))
	fmt.Fprintf(&b, "Environment=%s\n", envQuote("PATH="+p.Path))
	if p.Home != "" {
		fmt.Fprintf(&b, "Environment=%s\n", envQuote("MB_HOME="+p.Home))
	}
	b.WriteString("Restart=on-failure\n")
	b.WriteString("RestartSec=2s\n")
	b.WriteString("# Stopping or restarting the daemon must not kill the VMs: only the\n")
	b.WriteString("# daemon process is signalled; vmhosts and QEMU stay in the cgroup.\n")
	b.WriteString("KillMode=process\n")
	b.WriteString("TimeoutStopSec=30s\n\n")
	b.WriteString("[Install]\n")
	b.WriteString("WantedBy=default.target\n")
	return b.String()
}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	return r.Replace(s)
}

// LaunchdPlist renders the launchd agent plist.
func LaunchdPlist(p Params) string {
	env := map[string]string{"PATH": p.Path}
	if p.Home != "" {
		env["MB_HOME"] = p.Home
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by mb service install; remove with mb service uninstall. -->
<plist version="1.0">
<dict>
`)
	fmt.Fprintf(&b, "\t<key>Label</key>\n\t<string>%s</string>\n", LaunchdLabel)
	b.WriteString("\t<key>ProgramArguments</key>\n\t<array>\n")
	args := []string{p.MB, "daemon", "--foreground"}
	if p.DaemonLog != "" {
		args = append(args, "--log-file", p.DaemonLog)
	}
	for _, a := range args {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", xmlEscape(a))
	}
	b.WriteString("\t</array>\n")
	b.WriteString("\t<key>EnvironmentVariables</key>\n\t<dict>\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "\t\t<key>%s</key>\n\t\t<string>%s</string>\n", k, xmlEscape(env[k]))
	}
	b.WriteString("\t</dict>\n")
	b.WriteString("\t<key>RunAtLoad</key>\n\t<true/>\n")
	b.WriteString("\t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	b.WriteString("\t<!-- Unloading the agent must not kill the VMs' vmhosts and QEMU. -->\n")
	b.WriteString("\t<key>AbandonProcessGroup</key>\n\t<true/>\n")
	if p.LogFile != "" {
		fmt.Fprintf(&b, "\t<key>StandardOutPath</key>\n\t<string>%s</string>\n", xmlEscape(p.LogFile))
		fmt.Fprintf(&b, "\t<key>StandardErrorPath</key>\n\t<string>%s</string>\n", xmlEscape(p.LogFile))
	}
	b.WriteString("\t<key>ProcessType</key>\n\t<string>Background</string>\n")
	b.WriteString("</dict>\n</plist>\n")
	return b.String()
}

// SystemdUnitPath is where the user unit goes: $XDG_CONFIG_HOME/systemd/user.
func SystemdUnitPath(userHome string) string {
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		cfg = filepath.Join(userHome, ".config")
	}
	return filepath.Join(cfg, "systemd", "user", SystemdUnitName)
}

// LaunchdPlistPath is where the agent plist goes.
func LaunchdPlistPath(userHome string) string {
	return filepath.Join(userHome, "Library", "LaunchAgents", LaunchdLabel+".plist")
}
