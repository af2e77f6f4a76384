package cloudinit

import (
	"fmt"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Shares become cloud-init mounts entries, read-only ones with ro.
func TestUserDataMountsShares(t *testing.T) {
	c := Config{Name: "deb", AuthorizedKeys: []string{"ssh-ed25519 AAAA test"},
		Shares: []Share{{Tag: "mb-share-0", Path: "/src"}, {Tag: "docs", Path: "/docs", ReadOnly: true}}}
	out, err := UserData(c)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Mounts [][]string `yaml:"mounts"`
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(doc.Mounts)
	if want := "[[mb-share-0 /src virtiofs defaults,nofail 0 0] [docs /docs virtiofs defaults,nofail,ro 0 0]]"; got != want {
		t.Errorf("mounts %s, want %s", got, want)
	}
}
