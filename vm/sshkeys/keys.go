// Package sshkeys holds a VM's SSH identity: the ed25519 client key mb logs
// in with, the ed25519 host key injected into the guest through cloud-init
// (so the host key is known before the first connection and no
// trust-on-first-use is needed), the per-VM known_hosts file, the `mb ssh`
// command line, the ssh-config block, and the readiness probe that does a
// real SSH handshake verifying the injected host key.
package sshkeys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mbvm/mb/internal/atomicfile"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// File names inside the VM directory.
const (
	ClientKeyFile  = "id_ed25519"
	ClientPubFile  = "id_ed25519.pub"
	HostKeyFile    = "ssh_host_ed25519_key"
	HostPubFile    = "ssh_host_ed25519_key.pub"
	KnownHostsFile = "known_hosts"
)

// Keys is a VM's SSH key material, as stored in its directory.
type Keys struct {
	// Dir is the VM directory holding the key files.
	Dir string
	// ClientPrivate is the client private key in OpenSSH PEM form.
	ClientPrivate []byte
	// ClientPublic is the client public key as an authorized_keys line.
	ClientPublic string
	// HostPrivate is the host private key in OpenSSH PEM form, as cloud-init's
	// ssh_keys.ed25519_private wants it.
	HostPrivate []byte
	// HostPublic is the host public key as an authorized_keys-style line, as
	// cloud-init's ssh_keys.ed25519_public wants it.
	HostPublic string

	clientSigner ssh.Signer
	hostKey      ssh.PublicKey
}

// ClientKeyPath is the path of the client private key (ssh -i).
func (k *Keys) ClientKeyPath() string { return filepath.Join(k.Dir, ClientKeyFile) }

// KnownHostsPath is the path of the per-VM known_hosts file.
func (k *Keys) KnownHostsPath() string { return filepath.Join(k.Dir, KnownHostsFile) }

// ClientSigner signs the client's authentication.
func (k *Keys) ClientSigner() ssh.Signer { return k.clientSigner }

// HostKey is the public host key the guest must present.
func (k *Keys) HostKey() ssh.PublicKey { return k.hostKey }

// Ensure loads the VM's keys from dir, generating the missing pair(s)
// first, and (re)writes known_hosts for alias (the VM name). Every file
// is written with mode 0600.
func Ensure(dir, alias string) (*Keys, error) {
	comment := "mb-" + alias
	if err := ensurePair(dir, ClientKeyFile, ClientPubFile, comment); err != nil {
		return nil, fmt.Errorf("SSH client key for VM %q: %w", alias, err)
	}
	if err := ensurePair(dir, HostKeyFile, HostPubFile, comment+"-host"); err != nil {
		return nil, fmt.Errorf("SSH host key for VM %q: %w", alias, err)
	}
	k, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if err := k.WriteKnownHosts(alias); err != nil {
		return nil, err
	}
	return k, nil
}

// Load reads the VM's keys from dir; it generates nothing.
func Load(dir string) (*Keys, error) {
	k := &Keys{Dir: dir}
	var err error
	if k.ClientPrivate, k.clientSigner, k.ClientPublic, err = readPair(dir, ClientKeyFile); err != nil {
		return nil, err
	}
	var hostSigner ssh.Signer
	if k.HostPrivate, hostSigner, k.HostPublic, err = readPair(dir, HostKeyFile); err != nil {
		return nil, err
	}
	k.hostKey = hostSigner.PublicKey()
	return k, nil
}

// WriteKnownHosts writes known_hosts holding the host key under alias, the
// name ssh is given through HostKeyAlias, so the port never matters.
func (k *Keys) WriteKnownHosts(alias string) error {
	line := knownhosts.Line([]string{alias}, k.hostKey) + "\n"
	if err := writeFile0600(k.KnownHostsPath(), []byte(line)); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	return nil
}

// ensurePair generates an ed25519 pair into dir/priv and dir/pub unless the
// private key already exists. The public file is rewritten from the private
// key when it is missing.
func ensurePair(dir, priv, pub, comment string) error {
	privPath := filepath.Join(dir, priv)
	if _, err := os.Stat(privPath); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", privPath, err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encode public key: %w", err)
	}
	pubLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	// Public first: a crash in between leaves no private key, so the next
	// Ensure generates a consistent pair again.
	if err := writeFile0600(filepath.Join(dir, pub), []byte(pubLine)); err != nil {
		return err
	}
	return writeFile0600(privPath, pem.EncodeToMemory(block))
}

// readPair reads dir/name (private, OpenSSH PEM) and returns its bytes, a
// signer and the public key line, taken from the private key so the pair
// can never disagree.
func readPair(dir, name string) ([]byte, ssh.Signer, string, error) {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read SSH key %s: %w (recreate the VM, or delete the key files so mb generates new ones)", path, err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, nil, "", fmt.Errorf("parse SSH key %s: %w", path, err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return nil, nil, "", fmt.Errorf("SSH key %s is %s, want ed25519", path, signer.PublicKey().Type())
	}
	pubLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if pubData, err := os.ReadFile(filepath.Join(dir, name+".pub")); err == nil {
		// Keep the comment of the stored public key when it is the same key.
		if f := strings.Fields(string(pubData)); len(f) >= 2 && f[0]+" "+f[1] == pubLine {
			pubLine = strings.TrimSpace(string(bytes.TrimSpace(pubData)))
		}
	}
	return data, signer, pubLine, nil
}

// writeFile0600 writes data atomically with mode 0600.
func writeFile0600(path string, data []byte) error {
	return atomicfile.Write(path, data, 0o600)
}
