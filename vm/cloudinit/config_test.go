package cloudinit

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, data)
	}
	return m
}

func TestUserDataCarriesUserKeysAndHostKey(t *testing.T) {
	c := testConfig()
	c.UserData = ""
	data, err := UserData(c)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, data)
	users := m["users"].([]any)
	if len(users) != 1 {
		t.Fatalf("users = %v", users)
	}
	u := users[0].(map[string]any)
	if u["name"] != "mb" || u["sudo"] != "ALL=(ALL) NOPASSWD:ALL" || u["lock_passwd"] != true {
		t.Errorf("user entry %v: want mb with passwordless sudo and a locked password", u)
	}
	if keys := u["ssh_authorized_keys"].([]any); len(keys) != 1 || keys[0] != c.AuthorizedKeys[0] {
		t.Errorf("authorized keys %v", keys)
	}
	sk := m["ssh_keys"].(map[string]any)
	if sk["ed25519_private"] != c.HostKeyPrivate || sk["ed25519_public"] != c.HostKeyPublic {
		t.Errorf("ssh_keys %v do not carry the host key", sk)
	}
	if m["ssh_pwauth"] != false {
		t.Error("password login is not disabled")
	}
	if m["ssh_deletekeys"] != true {
		t.Error("ssh_deletekeys is not set: the image's own host keys would stay")
	}
	if m["manage_etc_hosts"] != true {
		t.Error("manage_etc_hosts is not set: sudo cannot resolve the hostname")
	}
}

func TestUserDataMergesUserData(t *testing.T) {
	c := testConfig()
	c.User = "dev"
	c.UserData = `#cloud-config
hostname: custom
users:
  - name: alice
runcmd:
  - echo hi
ssh_keys:
  ed25519_private: evil
  rsa_private: extra
packages: [htop]
`
	m := decode(t, must(UserData(c)))
	if m["hostname"] != "custom" {
		t.Errorf("hostname %v: the user's value should win", m["hostname"])
	}
	users := m["users"].([]any)
	if len(users) != 2 || users[0].(map[string]any)["name"] != "dev" || users[1].(map[string]any)["name"] != "alice" {
		t.Errorf("users %v: want mb's user, then the user's", users)
	}
	sk := m["ssh_keys"].(map[string]any)
	if sk["ed25519_private"] != c.HostKeyPrivate {
		t.Error("user-data replaced the injected host key")
	}
	if sk["rsa_private"] != "extra" {
		t.Error("user-data's other ssh_keys were dropped")
	}
	if r := m["runcmd"].([]any); len(r) != 1 || r[0] != "echo hi" {
		t.Errorf("runcmd %v", r)
	}
}

func TestUserDataBadInput(t *testing.T) {
	tests := []struct {
		name, userData, want string
	}{
		{"invalid YAML", "runcmd: [unclosed\n", "not valid YAML"},
		{"tab indent", "a:\n\tb: 1\n", "not valid YAML"},
		{"not a mapping", "- a\n- b\n", "must be a #cloud-config YAML mapping"},
		{"scalar", "hello\n", "must be a #cloud-config YAML mapping"},
		{"shell script", "#!/bin/sh\necho hi\n", "only #cloud-config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			c.UserData = tc.userData
			_, err := UserData(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestUserDataNeedsKeys(t *testing.T) {
	if _, err := UserData(Config{Name: "x"}); err == nil || !strings.Contains(err.Error(), "no authorized key") {
		t.Errorf("err = %v", err)
	}
}

func TestInstanceIDFollowsContent(t *testing.T) {
	c := testConfig()
	s1 := must(Render(c))
	s2 := must(Render(c))
	c.UserData = "#cloud-config\npackages: [jq]\n"
	s3 := must(Render(c))
	if string(s1.MetaData) != string(s2.MetaData) {
		t.Error("the same config gives different instance-ids")
	}
	if string(s1.MetaData) == string(s3.MetaData) {
		t.Error("changed user-data keeps the instance-id, so the guest would not apply it")
	}
	c.InstanceID = "fixed"
	if md := string(must(Render(c)).MetaData); !strings.Contains(md, "instance-id: fixed") {
		t.Errorf("meta-data %q ignores InstanceID", md)
	}
}

func TestNetworkConfigMAC(t *testing.T) {
	c := testConfig()
	c.MAC = "52:54:00:AB:CD:EF"
	var n struct {
		Version   int
		Ethernets map[string]struct {
			Match struct{ Macaddress string }
			Dhcp4 bool
		}
	}
	if err := yaml.Unmarshal(NetworkConfig(c), &n); err != nil {
		t.Fatal(err)
	}
	e := n.Ethernets["mb0"]
	if n.Version != 2 || e.Match.Macaddress != "52:54:00:ab:cd:ef" || !e.Dhcp4 {
		t.Errorf("network-config %+v", n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
