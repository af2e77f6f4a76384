package disk

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// qemu-img runs on files from the network and from guests: under Linux it
// gets a memory limit (RLIMIT_AS) it cannot exceed.
func TestQemuImgRunsUnderMemoryLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the memory limit is set on Linux only")
	}
	out, err := qemuImgCommand(testCtx(t), "/bin/sh", "-c", "ulimit -v").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(qemuImgMemKiB) {
		t.Errorf("qemu-img's address-space limit is %q KiB, want %d", got, qemuImgMemKiB)
	}
}

func TestCheckStandalone(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", plain, "1M")
	backed := filepath.Join(dir, "backed.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret, backed, "1M")
	v2 := filepath.Join(dir, "v2.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-F", "raw", "-b", secret, v2, "1M")
	data := filepath.Join(dir, "data.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+secret, data, "1M")

	if err := CheckStandalone(plain, "qcow2"); err != nil {
		t.Errorf("a standalone qcow2: %v", err)
	}
	// Read as raw, the same bytes reference nothing: QEMU will not parse them.
	if err := CheckStandalone(backed, "raw"); err != nil {
		t.Errorf("a qcow2 file attached as raw: %v", err)
	}
	for _, p := range []string{backed, v2, data} {
		err := CheckStandalone(p, "qcow2")
		if !errors.Is(err, ErrReferencesFile) || !strings.Contains(err.Error(), secret) {
			t.Errorf("%s: err = %v, want ErrReferencesFile naming %s", filepath.Base(p), err, secret)
		}
	}
	// ReadInfo refuses an external data file before qemu-img opens it.
	if _, err := ReadInfo(testCtx(t), data, "qcow2"); !errors.Is(err, ErrReferencesFile) {
		t.Errorf("ReadInfo of a qcow2 with a data file: err = %v, want ErrReferencesFile", err)
	}
	if _, err := Probe(testCtx(t), `json:{"file.filename":"/etc/shadow"}`); !errors.Is(err, ErrJSONName) {
		t.Errorf("json: name: err = %v, want ErrJSONName", err)
	}
	if _, err := ReadInfo(testCtx(t), plain, "vmdk"); err == nil {
		t.Error("ReadInfo accepted format vmdk")
	}
}
