package sshkeys

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/mbvm/mb/internal/testenv"
)

func TestEnsureWritesPrivateFiles0600(t *testing.T) {
	dir := t.TempDir()
	k, err := Ensure(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ClientKeyFile, ClientPubFile, HostKeyFile, HostPubFile, KnownHostsFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if k.ClientKeyPath() != filepath.Join(dir, ClientKeyFile) {
		t.Errorf("ClientKeyPath = %s", k.ClientKeyPath())
	}
	if !strings.HasPrefix(k.ClientPublic, "ssh-ed25519 ") || !strings.HasPrefix(k.HostPublic, "ssh-ed25519 ") {
		t.Errorf("public keys %q, %q: want ssh-ed25519 lines", k.ClientPublic, k.HostPublic)
	}
	if k.ClientPublic == k.HostPublic {
		t.Error("client and host keys are the same key")
	}
	if !bytes.Contains(k.HostPrivate, []byte("BEGIN OPENSSH PRIVATE KEY")) {
		t.Errorf("host private key is not in OpenSSH form:\n%s", k.HostPrivate)
	}
}

func TestEnsureKeepsExistingKeys(t *testing.T) {
	dir := t.TempDir()
	k1, err := Ensure(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Ensure(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if k1.ClientPublic != k2.ClientPublic || k1.HostPublic != k2.HostPublic {
		t.Error("a second Ensure generated new keys")
	}
	// A missing public file is restored from the private key.
	if err := os.Remove(filepath.Join(dir, ClientPubFile)); err != nil {
		t.Fatal(err)
	}
	k3, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(k3.ClientPublic)[1], strings.Fields(k1.ClientPublic)[1]; got != want {
		t.Errorf("public key from the private key differs: %s vs %s", got, want)
	}
}

func TestLoadMissingKeysNamesTheFix(t *testing.T) {
	_, err := Load(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "recreate the VM") {
		t.Fatalf("err = %v, want one naming the fix", err)
	}
}

func TestKnownHostsHoldsHostKeyUnderAlias(t *testing.T) {
	dir := t.TempDir()
	k, err := Ensure(dir, "deb")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(k.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	addr := &fakeAddr{}
	if err := cb("deb:22", addr, k.HostKey()); err != nil {
		t.Errorf("known_hosts rejects the host key under the alias: %v", err)
	}
	other, err := Ensure(t.TempDir(), "deb")
	if err != nil {
		t.Fatal(err)
	}
	if err := cb("deb:22", addr, other.HostKey()); err == nil {
		t.Error("known_hosts accepts another host key")
	}
}

type fakeAddr struct{}

func (fakeAddr) Network() string { return "tcp" }
func (fakeAddr) String() string  { return "127.0.0.1:22" }

func TestPrivateKeysReadableByOpenSSH(t *testing.T) {
	keygen := testenv.Tool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	k, err := Ensure(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ClientKeyFile, HostKeyFile} {
		out, err := exec.Command(keygen, "-y", "-f", filepath.Join(dir, f)).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -y %s: %v\n%s", f, err, out)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(out)
		if err != nil {
			t.Fatal(err)
		}
		want := k.ClientSigner().PublicKey()
		if f == HostKeyFile {
			want = k.HostKey()
		}
		if !bytes.Equal(pub.Marshal(), want.Marshal()) {
			t.Errorf("%s: ssh-keygen derives another public key", f)
		}
	}
}
