package image

import (
	"strings"
	"testing"
)

func TestNameFromSource(t *testing.T) {
	tests := map[string]string{
		"https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2": "debian-12-genericcloud-amd64",
		"https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img":            "noble-server-cloudimg-amd64",
		"file:///var/cache/Fedora-Cloud-Base-41-1.4.x86_64.qcow2":                                  "fedora-cloud-base-41-1.4.x86_64",
		"/tmp/My Disk.raw":            "my-disk",
		"http://host/dl?file=x.qcow2": "dl",
	}
	for src, want := range tests {
		if got := NameFromSource(src); got != want {
			t.Errorf("NameFromSource(%q) = %q, want %q", src, got, want)
		}
		if err := ValidateName(want); err != nil {
			t.Errorf("derived name %q is invalid: %v", want, err)
		}
	}
	for _, bad := range []string{"", "-x", "A", "a/b", "..", "a..b", ".hidden"} {
		if ValidateName(bad) == nil {
			t.Errorf("ValidateName(%q) accepted", bad)
		}
	}
}

// A name that climbs out of the image cache never reaches the file system:
// image: ../../../../etc used to read /etc/image.yaml.
func TestLoadRefusesPathNames(t *testing.T) {
	home := t.TempDir()
	for _, bad := range []string{"../../../../etc", "../../decoy", "a/b"} {
		_, err := Load(home, bad)
		if err == nil || !strings.Contains(err.Error(), "invalid image name") {
			t.Errorf("Load(%q) = %v, want an invalid image name error", bad, err)
		}
	}
}
