package cloudinit

import (
	"fmt"
	"path/filepath"

	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vm/sshkeys"
)

// PrepareVM makes everything a distribution guest needs from mb before it
// boots, in the VM directory dir: the VM's SSH client and host keys
// (generated once, kept afterwards), its known_hosts, and the NoCloud seed
// ISO built from the spec (hostname, user, keys, user_data). It returns the
// seed's path, to attach as a read-only raw virtio disk. It is cheap and
// safe to call on every start: a changed user_data gives a new
// instance-id, so the guest applies it on its next boot.
func PrepareVM(dir string, s *spec.Spec) (string, error) {
	keys, err := sshkeys.Ensure(dir, s.Name)
	if err != nil {
		return "", err
	}
	seed := filepath.Join(dir, SeedFile)
	err = WriteSeed(seed, Config{
		Name:           s.Name,
		AuthorizedKeys: []string{keys.ClientPublic},
		HostKeyPrivate: string(keys.HostPrivate),
		HostKeyPublic:  keys.HostPublic,
		UserData:       s.UserData,
		Shares:         SharesOf(s),
	})
	if err != nil {
		return "", fmt.Errorf("VM %q: %w", s.Name, err)
	}
	return seed, nil
}
