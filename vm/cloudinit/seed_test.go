package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/internal/testenv"
)

func testConfig() Config {
	return Config{
		Name:           "deb",
		AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClient mb-deb"},
		HostKeyPrivate: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
		HostKeyPublic:  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost mb-deb-host",
		UserData:       "#cloud-config\nruncmd:\n  - [touch, /run/from-user]\n",
	}
}

// readISO opens path with go-diskfs and returns its files by name.
func readISO(t *testing.T, path string) (*iso9660.FileSystem, map[string]string) {
	t.Helper()
	b, err := file.OpenFromPath(path, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := iso9660.Read(b, fi.Size(), 0, 2048)
	if err != nil {
		t.Fatalf("read back the seed ISO: %v", err)
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		data, err := fsys.ReadFile(e.Name())
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		files[e.Name()] = string(data)
	}
	return fsys, files
}

func TestWriteSeedReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), SeedFile)
	c := testConfig()
	if err := WriteSeed(path, c); err != nil {
		t.Fatal(err)
	}
	fsys, files := readISO(t, path)
	// go-diskfs pads the identifier with NULs; blkid (what cloud-init uses,
	// see TestSeedLabelSeenByBlkid) trims them.
	if got := strings.TrimRight(fsys.Label(), "\x00 "); got != VolumeLabel {
		t.Errorf("volume label %q, want %q", got, VolumeLabel)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "meta-data network-config user-data" {
		t.Fatalf("files %v, want the Rock Ridge names meta-data network-config user-data", names)
	}
	if !strings.HasPrefix(files["user-data"], "#cloud-config\n") {
		t.Errorf("user-data lacks the #cloud-config header:\n%s", files["user-data"])
	}
	var ud map[string]any
	if err := yaml.Unmarshal([]byte(files["user-data"]), &ud); err != nil {
		t.Fatalf("user-data on the ISO is not YAML: %v", err)
	}
	if ud["hostname"] != "deb" {
		t.Errorf("hostname %v, want deb", ud["hostname"])
	}
	var md map[string]string
	if err := yaml.Unmarshal([]byte(files["meta-data"]), &md); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(md["instance-id"], "deb-") || md["local-hostname"] != "deb" {
		t.Errorf("meta-data %v", md)
	}
	if !strings.Contains(files["network-config"], DefaultMAC) {
		t.Errorf("network-config does not match the default MAC:\n%s", files["network-config"])
	}
	// Only the seed is left in the directory: no work files.
	left, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 {
		t.Errorf("directory holds %d entries, want only the seed", len(left))
	}
}

// TestSeedLabelSeenByBlkid checks the label with an independent reader:
// cloud-init finds the seed by this label through blkid.
func TestSeedLabelSeenByBlkid(t *testing.T) {
	blkid := testenv.Tool(t, "blkid", "util-linux")
	path := filepath.Join(t.TempDir(), SeedFile)
	if err := WriteSeed(path, testConfig()); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(blkid, "-p", "-o", "export", path).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "LABEL=cidata") || !strings.Contains(string(out), "TYPE=iso9660") {
		t.Errorf("blkid sees:\n%s\nwant LABEL=cidata and TYPE=iso9660", out)
	}
}

func TestWriteSeedInvalidUserDataLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SeedFile)
	if err := os.WriteFile(path, []byte("old seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.UserData = "runcmd: [unclosed\n"
	err := WriteSeed(path, c)
	if err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("err = %v, want a YAML error", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "old seed" {
		t.Error("a failed WriteSeed changed the existing seed")
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Errorf("directory holds %d entries after a failure, want 1", len(left))
	}
}
