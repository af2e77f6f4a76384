package sshkeys

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultUser is the guest user mb creates through cloud-init.
const DefaultUser = "mb"

// Target is where and as whom to connect to a VM over SSH.
type Target struct {
	// Name is the VM name; it is the HostKeyAlias and the ssh-config Host.
	Name string
	// Dir is the VM directory holding the key files and known_hosts.
	Dir string
	// User is the guest user; DefaultUser when empty.
	User string
	// Port is the host port on 127.0.0.1 forwarded to the guest's sshd.
	Port int
	// Boot names this run of the VM (its start time); a shared
	// connection (MuxPath) belongs to one run, so a VM restarted or
	// restored on the same port never reaches a master of its last run.
	Boot string
}

func (t Target) user() string {
	if t.User == "" {
		return DefaultUser
	}
	return t.User
}

// Options returns the ssh -o options shared by Argv and ConfigBlock, as
// key/value pairs in a stable order.
func (t Target) options() [][2]string {
	return [][2]string{
		{"IdentitiesOnly", "yes"},
		{"StrictHostKeyChecking", "yes"},
		{"UserKnownHostsFile", filepath.Join(t.Dir, KnownHostsFile)},
		{"HostKeyAlias", t.Name},
	}
}

// Argv returns the command line `mb ssh` execs: the system ssh, the VM's
// key, its forwarded port on 127.0.0.1, its known_hosts with strict host
// key checking under the VM name as alias, then the remote command, if any.
// argv[0] is "ssh"; the caller resolves it with exec.LookPath.
func Argv(t Target, cmd []string) []string {
	argv := []string{"ssh", "-i", filepath.Join(t.Dir, ClientKeyFile), "-p", strconv.Itoa(t.Port)}
	for _, o := range t.options() {
		argv = append(argv, "-o", o[0]+"="+o[1])
	}
	// "--" ends ssh's options, so a command starting with "-" stays a command.
	argv = append(argv, "--", t.user()+"@127.0.0.1")
	return append(argv, cmd...)
}

// ConfigBlock returns an OpenSSH client config block for the VM, for use
// with scp, rsync or editors: `mb ssh-config NAME >> ~/.ssh/config`.
func ConfigBlock(t Target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n", t.Name)
	fmt.Fprintf(&b, "  HostName 127.0.0.1\n")
	fmt.Fprintf(&b, "  Port %d\n", t.Port)
	fmt.Fprintf(&b, "  User %s\n", t.user())
	fmt.Fprintf(&b, "  IdentityFile %s\n", configQuote(filepath.Join(t.Dir, ClientKeyFile)))
	for _, o := range t.options() {
		fmt.Fprintf(&b, "  %s %s\n", o[0], configQuote(o[1]))
	}
	return b.String()
}

// configQuote quotes a value for ssh_config when it holds spaces.
func configQuote(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
