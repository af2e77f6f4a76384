package cloudinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vm/sshkeys"
)

func TestPrepareVM(t *testing.T) {
	dir := t.TempDir()
	s := &spec.Spec{Name: "deb", UserData: "#cloud-config\npackages: [jq]\n"}
	seed, err := PrepareVM(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	if seed != filepath.Join(dir, SeedFile) {
		t.Errorf("seed at %s", seed)
	}
	keys, err := sshkeys.Load(dir)
	if err != nil {
		t.Fatalf("PrepareVM made no keys: %v", err)
	}
	_, files := readISO(t, seed)
	var ud map[string]any
	if err := yaml.Unmarshal([]byte(files["user-data"]), &ud); err != nil {
		t.Fatal(err)
	}
	user := ud["users"].([]any)[0].(map[string]any)
	if got := user["ssh_authorized_keys"].([]any)[0]; got != keys.ClientPublic {
		t.Errorf("authorized key %v, want the VM's client key %s", got, keys.ClientPublic)
	}
	if got := ud["ssh_keys"].(map[string]any)["ed25519_public"]; got != keys.HostPublic {
		t.Errorf("host key %v, want %s", got, keys.HostPublic)
	}
	if p := ud["packages"].([]any); len(p) != 1 || p[0] != "jq" {
		t.Errorf("user_data not merged: packages %v", p)
	}

	// Again: the same keys, so known_hosts stays valid.
	if _, err := PrepareVM(dir, s); err != nil {
		t.Fatal(err)
	}
	again, err := sshkeys.Load(dir)
	if err != nil || again.HostPublic != keys.HostPublic {
		t.Errorf("a second PrepareVM changed the host key: %v", err)
	}

	// Bad user_data: a clear error and the previous seed left alone.
	before, _ := os.ReadFile(seed)
	s.UserData = "packages: [jq\n"
	if _, err := PrepareVM(dir, s); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Errorf("err = %v, want a YAML error", err)
	}
	if after, _ := os.ReadFile(seed); string(after) != string(before) {
		t.Error("a failed PrepareVM changed the seed")
	}
}
