// Package cloudinit builds the cloud-init NoCloud seed ISO that configures a
// distribution guest on its first boot: hostname, the login user with the
// VM's client key and passwordless sudo, the SSH host key mb generated (so
// the host key is known before the first connection), the instance-id, the
// network, and the user's own user-data merged in.
package cloudinit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultUser is the login user the seed creates when Config.User is empty.
const DefaultUser = "mb"

// DefaultMAC is QEMU's MAC address for a guest's first NIC; the seed's
// network-config matches the NIC by it when Config.MAC is empty.
const DefaultMAC = "52:54:00:12:34:56"

// Config is what goes into a VM's seed.
type Config struct {
	// Name is the VM name; the default hostname and instance-id derive from it.
	Name string
	// Hostname defaults to Name.
	Hostname string
	// InstanceID defaults to Name plus a digest of the seed's content, so a
	// changed seed (new user-data, new keys) is applied on the next boot.
	InstanceID string
	// User is the login user; DefaultUser when empty.
	User string
	// AuthorizedKeys are the public keys (authorized_keys lines) that may
	// log in as User: the VM's client key.
	AuthorizedKeys []string
	// HostKeyPrivate and HostKeyPublic are the guest's ed25519 SSH host key
	// (OpenSSH PEM and public key line), installed through cloud-init's
	// ssh_keys.
	HostKeyPrivate string
	HostKeyPublic  string
	// MAC is the guest NIC's MAC address, matched by network-config;
	// DefaultMAC when empty.
	MAC string
	// UserData is the user's own #cloud-config, merged into mb's.
	UserData string
	// Shares are the host folder shares the guest mounts (virtiofs).
	Shares []Share
}

func (c Config) user() string {
	if c.User == "" {
		return DefaultUser
	}
	return c.User
}

func (c Config) hostname() string {
	if c.Hostname == "" {
		return c.Name
	}
	return c.Hostname
}

func (c Config) mac() string {
	if c.MAC == "" {
		return DefaultMAC
	}
	return strings.ToLower(c.MAC)
}

// validate checks the fields the seed cannot do without.
func (c Config) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("cloud-init seed: the VM name is empty"))
	}
	if len(c.AuthorizedKeys) == 0 {
		errs = append(errs, errors.New("cloud-init seed: no authorized key for the login user (generate the VM's keys first)"))
	}
	if (c.HostKeyPrivate == "") != (c.HostKeyPublic == "") {
		errs = append(errs, errors.New("cloud-init seed: the host key needs both its private and its public half"))
	}
	return errors.Join(errs...)
}

// UserData renders the #cloud-config user-data: mb's settings with the
// user's UserData merged in. Invalid user YAML is an error naming the line.
func UserData(c Config) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	base := map[string]any{
		"hostname":          c.hostname(),
		"preserve_hostname": false,
		// sudo resolves the hostname; without this it warns on every call.
		"manage_etc_hosts": true,
		"ssh_pwauth":       false,
		"disable_root":     true,
		"users": []any{map[string]any{
			"name":                c.user(),
			"gecos":               "mb",
			"shell":               "/bin/bash",
			"sudo":                "ALL=(ALL) NOPASSWD:ALL",
			"lock_passwd":         true,
			"ssh_authorized_keys": toAny(c.AuthorizedKeys),
		}},
	}
	if m := shareMounts(c.Shares); m != nil { // shares.go
		base["mounts"] = m
	}
	if c.HostKeyPrivate != "" {
		// With ssh_keys given, cloud-init deletes the image's host keys
		// and generates none: sshd offers only the injected key.
		base["ssh_deletekeys"] = true
		base["ssh_keys"] = map[string]any{
			"ed25519_private": strings.TrimRight(c.HostKeyPrivate, "\n") + "\n",
			"ed25519_public":  strings.TrimSpace(c.HostKeyPublic),
		}
	}
	user, err := parseUserData(c.UserData)
	if err != nil {
		return nil, err
	}
	merged := merge(base, user)
	// The host key is what makes the first connection trustworthy: the
	// user's user-data may add to ssh_keys but never replace mb's key.
	if c.HostKeyPrivate != "" {
		keys, _ := merged["ssh_keys"].(map[string]any)
		keys["ed25519_private"] = base["ssh_keys"].(map[string]any)["ed25519_private"]
		keys["ed25519_public"] = base["ssh_keys"].(map[string]any)["ed25519_public"]
	}
	out, err := yaml.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("encode cloud-init user-data: %w", err)
	}
	return append([]byte("#cloud-config\n"), out...), nil
}

// parseUserData decodes the user's #cloud-config into a mapping.
func parseUserData(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	first := strings.TrimSpace(strings.SplitN(strings.TrimSpace(s), "\n", 2)[0])
	lower := strings.ToLower(first)
	if strings.HasPrefix(first, "#!") || strings.HasPrefix(lower, "#include") || strings.HasPrefix(lower, "content-type:") {
		return nil, fmt.Errorf("user_data: only #cloud-config YAML can be merged into mb's seed, not %q (put scripts under runcmd or write_files)", first)
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("user_data is not valid YAML: %w (fix the spec's user_data; it must be a #cloud-config mapping)", err)
	}
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("user_data must be a #cloud-config YAML mapping (key: value), not a %T", v)
	}
	return m, nil
}

// listKeys are the user-data keys whose lists are concatenated (mb's
// entries first) rather than replaced.
var listKeys = map[string]bool{
	"users": true, "ssh_authorized_keys": true, "runcmd": true, "bootcmd": true,
	"packages": true, "write_files": true, "groups": true, "mounts": true,
}

// merge returns base with over merged in: mappings merge key by key,
// lists under listKeys are concatenated, anything else from over wins.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bv, ok := out[k]
		if !ok {
			out[k] = v
			continue
		}
		bm, bIsMap := bv.(map[string]any)
		om, oIsMap := v.(map[string]any)
		bl, bIsList := bv.([]any)
		ol, oIsList := v.([]any)
		switch {
		case bIsMap && oIsMap:
			out[k] = merge(bm, om)
		case bIsList && oIsList && listKeys[k]:
			out[k] = append(append([]any{}, bl...), ol...)
		default:
			out[k] = v
		}
	}
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// MetaData renders the NoCloud meta-data for the given user-data.
func MetaData(c Config, userData []byte) []byte {
	id := c.InstanceID
	if id == "" {
		sum := sha256.Sum256(append(append([]byte{}, userData...), NetworkConfig(c)...))
		id = c.Name + "-" + hex.EncodeToString(sum[:6])
	}
	out, _ := yaml.Marshal(map[string]any{
		"instance-id":    id,
		"local-hostname": c.hostname(),
	})
	return out
}

// NetworkConfig renders the network-config (version 2): DHCP on the NIC
// with the configured MAC address, whatever the guest names it.
func NetworkConfig(c Config) []byte {
	return []byte(fmt.Sprintf(`version: 2
ethernets:
  mb0:
    match:
      macaddress: "%s"
    dhcp4: true
`, c.mac()))
}
