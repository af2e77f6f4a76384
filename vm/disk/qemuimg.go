// Package disk prepares a VM's disks: the qcow2 overlay on a cached base
// image (the base is never written), the probe of an image's format with
// qemu-img, the UEFI firmware and the VM's own copy of its variable store,
// and the QEMU -drive arguments that attach them.
package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Info is what `qemu-img info --output=json` says about an image.
type Info struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	// BackingFilename is the backing file as recorded in the image;
	// FullBackingFilename is it resolved to a path.
	BackingFilename       string `json:"backing-filename,omitempty"`
	FullBackingFilename   string `json:"full-backing-filename,omitempty"`
	BackingFilenameFormat string `json:"backing-filename-format,omitempty"`
}

// QemuImg finds the qemu-img binary.
func QemuImg() (string, error) {
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		return "", fmt.Errorf("qemu-img not found in PATH: %w (install it: apt-get install qemu-utils, or brew install qemu)", err)
	}
	return p, nil
}

// Limits on every qemu-img run: images come from the network and from
// guests, and a crafted one must not hang mb or eat the host's memory.
const (
	qemuImgTimeout = 2 * time.Minute
	// qemuImgMemKiB caps qemu-img's address space (ulimit -v, in KiB).
	qemuImgMemKiB = 1 << 20
)

// qemuImgCommand builds the command that runs qemu-img with args under a
// memory limit: on Linux through sh, which sets RLIMIT_AS (ulimit -v) and
// then execs qemu-img; elsewhere (macOS refuses to set that limit) with
// the time limit only.
func qemuImgCommand(ctx context.Context, bin string, args ...string) *exec.Cmd {
	if runtime.GOOS != "linux" {
		return exec.CommandContext(ctx, bin, args...)
	}
	script := "ulimit -v " + strconv.Itoa(qemuImgMemKiB) + ` || exit 125; exec "$@"`
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, "sh", bin}, args...)...)
	// glibc gives each thread that allocates its own malloc arena, with
	// 64 MiB of address space reserved, up to eight per core: qemu-img's
	// I/O threads then run out of the limit while using little memory
	// ("qemu_thread_create: Resource temporarily unavailable", "failed to
	// allocate memory for stack"), more often the busier the host.
	cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=2")
	return cmd
}

// runQemuImg runs qemu-img with args and returns its standard output; the
// error carries qemu-img's own message. It runs with a time limit and a
// memory limit (see qemuImgCommand). Every caller passes the image's
// format (-f): qemu-img never guesses one.
func runQemuImg(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := QemuImg()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, qemuImgTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := qemuImgCommand(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qemu-img %s: %w", args[0], ctx.Err())
		}
		return nil, &QemuImgError{Args: args, Msg: msg, Err: err}
	}
	return stdout.Bytes(), nil
}

// QemuImgError is a failed qemu-img run with its message.
type QemuImgError struct {
	Args []string
	Msg  string
	Err  error
}

// Error says which qemu-img command failed and what qemu-img printed.
func (e *QemuImgError) Error() string {
	return fmt.Sprintf("qemu-img %s: %s", strings.Join(e.Args, " "), e.Msg)
}

// Unwrap returns the process error.
func (e *QemuImgError) Unwrap() error { return e.Err }

// ErrMissingBacking means a qcow2 image's backing file does not exist.
var ErrMissingBacking = errors.New("backing file is missing")

// ReadInfo runs `qemu-img info -f FORMAT --output=json` on path and checks
// its backing chain: a qcow2 whose backing file (or the backing file's own
// backing file) is gone is an error wrapping ErrMissingBacking that names
// the missing file, and a backing file whose format the overlay does not
// pin is refused. --force-share lets it read an image a running VM holds
// open. A qcow2 with an external data file is refused before qemu-img
// opens it. Backing files are allowed here for mb's own overlays; images
// that come in go through Probe, which refuses them.
func ReadInfo(ctx context.Context, path, format string) (*Info, error) {
	return readInfo(ctx, path, format, 0)
}

// maxChain bounds the backing chain ReadInfo follows.
const maxChain = 16

func readInfo(ctx context.Context, path, format string, depth int) (*Info, error) {
	if err := CheckFormat(format); err != nil {
		return nil, fmt.Errorf("disk image %s: %w", path, err)
	}
	if err := CheckName(path); err != nil {
		return nil, err
	}
	if format == "qcow2" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("probe disk image: %w", err)
		}
		_, dataFile, err := qcow2References(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("disk image %s: %w", path, err)
		}
		if dataFile != "" {
			return nil, fmt.Errorf("disk image %s: %w: its data is in the external file %q (use a standalone image)", path, ErrReferencesFile, dataFile)
		}
	}
	out, err := runQemuImg(ctx, "info", "-f", format, "--force-share", "--output=json", path)
	if err != nil {
		return nil, fmt.Errorf("probe disk image %s: %w", path, err)
	}
	var info Info
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("probe disk image %s: parse qemu-img output: %w", path, err)
	}
	backing := info.FullBackingFilename
	if backing == "" {
		backing = info.BackingFilename
	}
	if backing == "" {
		return &info, nil
	}
	if err := CheckName(backing); err != nil {
		return nil, fmt.Errorf("disk image %s: backing file: %w", path, err)
	}
	if _, err := os.Stat(backing); err != nil {
		return nil, fmt.Errorf("disk image %s: %w: %s (re-pull or re-import its base image, or recreate the VM)", path, ErrMissingBacking, backing)
	}
	if info.BackingFilenameFormat == "" {
		return nil, fmt.Errorf("disk image %s: its backing file %s has no recorded format, so QEMU would guess it: recreate the disk", path, backing)
	}
	if depth >= maxChain {
		return nil, fmt.Errorf("disk image %s: backing chain longer than %d images", path, maxChain)
	}
	if _, err := readInfo(ctx, backing, info.BackingFilenameFormat, depth+1); err != nil {
		return nil, err
	}
	return &info, nil
}
