package disk_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	dfsdisk "github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/mbvm/mb/bench/testvm"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/image"
)

// miniImage finds the mini image (make image) in $MB_HOME or ~/.mb.
func miniImage(t *testing.T) *image.Manifest {
	t.Helper()
	_, m := testvm.Image(t, "mini")
	if m.ReadyLine == "" || m.Kernel == "" || m.Initrd == "" {
		t.Fatalf("mini image %+v lacks a kernel, initrd or ready line", m)
	}
	return m
}

// buildESPDisk writes a GPT disk whose EFI system partition (FAT32) holds
// the kernel, its initrd and a startup.nsh that boots the kernel through
// its EFI stub with the given command line. No boot loader is involved:
// the firmware finds no \EFI\BOOT\BOOTX64.EFI, falls back to its shell,
// and the shell runs startup.nsh.
func buildESPDisk(t *testing.T, path, kernel, initrd, cmdline string) {
	t.Helper()
	const (
		size  = 64 << 20
		start = 2048
	)
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table := &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: start, End: size/512 - 2048, Type: gpt.EFISystemPartition, Name: "EFI System",
		}},
	}
	if err := d.Partition(table); err != nil {
		t.Fatalf("partition: %v", err)
	}
	fs, err := d.CreateFilesystem(dfsdisk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "ESP"})
	if err != nil {
		t.Fatalf("make the FAT32 ESP: %v", err)
	}
	put := func(name string, data []byte) {
		f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatalf("create %s on the ESP: %v", name, err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatalf("write %s on the ESP: %v", name, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put("/vmlinuz.efi", read(kernel))
	put("/initrd.img", read(initrd))
	put("/startup.nsh", []byte("fs0:\r\n\\vmlinuz.efi initrd=\\initrd.img "+cmdline+"\r\n"))
}

// TestUEFIBootsGPTDisk boots a GPT disk through the UEFI firmware that
// FindFirmware finds, attached with PflashArgs (with the VM's own
// variable store) and DriveArgs, and waits for the guest's ready line.
func TestUEFIBootsGPTDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil || disk.HostArch() != "x86_64" {
		testvm.Missing(t, "qemu-system-x86_64 on an x86_64 host is needed (apt-get install qemu-system-x86)")
	}
	fw, err := disk.FindFirmware("", "x86_64")
	if err != nil {
		testvm.Missing(t, err.Error())
	}
	m := miniImage(t)
	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	buildESPDisk(t, esp, m.Path(m.Kernel), m.Path(m.Initrd), m.Cmdline)
	// The disk is a real overlay, as a VM's would be.
	ov := disk.Overlay{Path: filepath.Join(dir, disk.OverlayFile), Base: esp, BaseFormat: "raw"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := ov.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	vars, err := fw.EnsureVars(dir)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-machine", "q35", "-accel", accel(), "-m", "256", "-smp", "1",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"}
	args = append(args, disk.PflashArgs(fw.Code, vars)...)
	args = append(args, disk.DriveArgs(disk.Drive{Path: ov.Path, Format: "qcow2"})...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var console lockedBuilder
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(out, &console))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), m.ReadyLine) {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("QEMU ended before the ready line %q; console:\n%s", m.ReadyLine, lastBytes(console.String(), 4000))
		}
	case <-ctx.Done():
		t.Fatalf("no ready line %q within the deadline; console:\n%s", m.ReadyLine, lastBytes(console.String(), 4000))
	}
	// The firmware wrote nothing into the shared template.
	if tmpl, err := os.Stat(fw.Vars); err == nil {
		if own, err := os.Stat(vars); err != nil || own.Size() != tmpl.Size() {
			t.Errorf("the VM's variable store %s: %v", vars, err)
		}
	}
}

// lockedBuilder is a strings.Builder the console reader appends to while
// the test may read it.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// accel is MB_ACCEL when set, else tcg: a /dev/kvm that exists may still
// be unusable (nested or restricted hosts), and tcg always works.
func accel() string {
	if a := os.Getenv("MB_ACCEL"); a != "" && a != "auto" {
		return a
	}
	return "tcg"
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
