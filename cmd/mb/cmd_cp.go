package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vm/sshkeys"
)

// The guest side of mb cp: tar through a streamed exec (the guest needs
// a tar, as the mini image's busybox and every distribution have).
const (
	// cpInScript unpacks the archive on stdin at $1: into it when it is a
	// directory, else as it (the archive's one top entry, named $2,
	// renamed).
	cpInScript = `D="$1"; B="$2"
if [ -d "$D" ]; then cd "$D" && exec tar -x -f -; fi
P=$(dirname "$D")
[ -d "$P" ] || { echo "$P: no such directory in the guest" >&2; exit 2; }
T=$(mktemp -d "$P/.mb-cp.XXXXXX") || exit 2
cd "$T" && tar -x -f - && rm -rf "$D" && mv "$T/$B" "$D"; s=$?; rm -rf "$T"; exit $s`
	// cpOutScript writes an archive of $1 to stdout; $2 is 1 for -r.
	cpOutScript = `S="$1"
[ -e "$S" ] || [ -L "$S" ] || { echo "$S: no such file or directory in the guest" >&2; exit 2; }
if [ -d "$S" ] && [ ! -L "$S" ] && [ "$2" != 1 ]; then echo "$S is a directory: use mb cp -r" >&2; exit 2; fi
cd "$(dirname "$S")" && exec tar -c -f - "$(basename "$S")"`
)

func (a *app) cpCmd() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "cp [-r] SRC DST",
		Short: "Copy files and directories between the host and a VM",
		Long: `Copies SRC to DST, one of them NAME:PATH in a VM, the other a host path. As
with cp, DST may be an existing directory (SRC goes inside it) or the new
name. Directories need -r. File modes and modification times are kept;
symbolic links are copied as links. Copying out, a link in the guest that
points outside the destination (an absolute target, or one climbing out
with ..) is refused and the copy stops, so a guest cannot make mb write
or point anywhere else on the host. Goes through mb-agent (as a tar
stream), or over SSH with the VM's key for a guest without mb-agent; a
progress line shows on a terminal.`,
		Example: `  mb cp ./build.tar.gz demo:/tmp/
  mb cp -r ./src demo:/root/src
  mb cp demo:/var/log/messages ./messages`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("mb cp needs a source and a destination: mb cp [-r] SRC DST, one of them NAME:PATH")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			srcVM, src := splitVMPath(args[0])
			dstVM, dst := splitVMPath(args[1])
			switch {
			case srcVM != "" && dstVM != "":
				return usagef("mb cp: both %q and %q are in a VM: copy through the host in two steps", args[0], args[1])
			case srcVM == "" && dstVM == "":
				return usagef("mb cp: neither %q nor %q names a VM: write one as NAME:PATH, such as demo:/tmp", args[0], args[1])
			}
			for _, n := range []string{srcVM, dstVM} {
				if n != "" {
					if err := spec.ValidateName(n); err != nil {
						return usagef("mb cp: %v", err)
					}
				}
			}
			if (srcVM != "" && src == "") || (dstVM != "" && dst == "") {
				return usagef("mb cp: give a path after the VM name, such as demo:/tmp")
			}
			ctx := cmd.Context()
			if dstVM != "" {
				return a.copyIn(ctx, src, dstVM, dst, recursive)
			}
			return a.copyOut(ctx, srcVM, src, dst, recursive)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy directories")
	return cmd
}

// splitVMPath splits NAME:PATH; a path with no colon, or one starting
// with / or . (./a:b), is a host path.
func splitVMPath(s string) (vm, p string) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return "", s
	}
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return "", s
	}
	return name, rest
}

// guestRun runs argv in the VM with stdin and stdout streamed; the
// command's stderr is returned.
func (a *app) guestRun(ctx context.Context, name string, argv []string, stdin io.Reader, stdout io.Writer) (int, string, error) {
	var errb bytes.Buffer
	sio := streamIO{stdin: stdin, stdinChunk: api.MaxStreamStdin, stdout: stdout, stderr: &errb}
	code, err := a.runStream(ctx, name, api.ExecStreamRequest{Argv: argv}, sio)
	if errors.Is(err, errNoStream) || api.HasCode(err, api.CodeNoAgent) {
		// No mb-agent: over SSH, for a guest that has a key (nothing of
		// stdin was read yet).
		code, err = a.guestRunSSH(ctx, name, argv, stdin, stdout, &errb, err)
	}
	return code, strings.TrimSpace(errb.String()), err
}

// guestRunSSH runs argv in the VM through the system ssh with the VM's
// key; why is the reason mb-agent could not.
func (a *app) guestRunSSH(ctx context.Context, name string, argv []string, stdin io.Reader, stdout, stderr io.Writer, why error) (int, error) {
	t, err := a.sshTarget(ctx, name, sshkeys.DefaultUser)
	if err != nil {
		return 0, fmt.Errorf("%w (and SSH: %v)", why, err)
	}
	if err := checkSSHKey(t); err != nil {
		return 0, fmt.Errorf("%w; %v", why, err)
	}
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return 0, fmt.Errorf("%w; ssh not found in PATH (apt-get install openssh-client)", why)
	}
	// ssh hands the remote shell one command line: quote every word.
	words := make([]string, len(argv))
	for i, w := range argv {
		words[i] = shellQuote(w)
	}
	full := sshkeys.Argv(t, []string{strings.Join(words, " ")})
	c := exec.CommandContext(ctx, bin, full[1:]...)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	err = c.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 255:
		return 0, fmt.Errorf("ssh to VM %s failed (exit 255): is sshd running in the guest? see mb ssh %s", name, name)
	case errors.As(err, &ee):
		return ee.ExitCode(), nil
	case err != nil:
		return 0, fmt.Errorf("run %s: %w", bin, err)
	}
	return 0, nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// copyIn sends the host path src to dst in the VM.
func (a *app) copyIn(ctx context.Context, src, name, dst string, recursive bool) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("mb cp: %w", err)
	}
	if fi.IsDir() && !recursive {
		return usagef("mb cp: %s is a directory: use mb cp -r", src)
	}
	var total int64
	_ = filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if i, err := d.Info(); err == nil {
				total += i.Size()
			}
		}
		return nil
	})
	base := filepath.Base(filepath.Clean(src))
	pr, pw := io.Pipe()
	go func() {
		// Whole frames: each read of the pipe then carries up to a
		// frame's worth, not one tar write's.
		bw := bufio.NewWriterSize(pw, api.MaxStreamStdin)
		err := writeTar(bw, src, base)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	bar := newCopyBar(a.stderr, "mb cp", total)
	defer bar.stop()
	code, msg, err := a.guestRun(ctx, name, []string{"sh", "-c", cpInScript, "sh", dst, base}, bar.reader(pr), io.Discard)
	pr.CloseWithError(errors.New("copy ended"))
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("mb cp: copy into VM %s failed (exit %d): %s", name, code, msg)
	}
	return nil
}

// writeTar writes src (a file, a link or a directory tree) as a tar
// archive whose top entry is named base.
func writeTar(w io.Writer, src, base string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(base, filepath.ToSlash(rel))
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("%s: not a regular file, directory or symbolic link: not copied", p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = name
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname, h.Uid, h.Gid = "", "", 0, 0
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, fi.Size())
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// copyOut fetches src from the VM to the host path dst.
func (a *app) copyOut(ctx context.Context, name, src, dst string, recursive bool) error {
	src = path.Clean(src)
	base := path.Base(src)
	root, top := dst, base
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		// dst is the new name.
		root, top = filepath.Dir(dst), filepath.Base(dst)
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			return fmt.Errorf("mb cp: %s is not a directory on the host", root)
		}
	}
	r := "0"
	if recursive {
		r = "1"
	}
	pr, pw := io.Pipe()
	bar := newCopyBar(a.stderr, "mb cp", 0)
	defer bar.stop()
	extracted := make(chan error, 1)
	go func() {
		err := extractTar(bar.reader(pr), root, base, top)
		if err == nil {
			// tar pads its archive to whole records (GNU tar: 10 KiB)
			// after the end marker: take the padding, not more.
			if n, _ := io.Copy(io.Discard, io.LimitReader(pr, maxTarPadding+1)); n > maxTarPadding {
				err = fmt.Errorf("the guest sent over %d bytes after the end of its archive", maxTarPadding)
			}
		}
		// On failure the guest's tar gets an error instead of waiting.
		pr.CloseWithError(errors.New("extraction stopped"))
		extracted <- err
	}()
	code, msg, err := a.guestRun(ctx, name, []string{"sh", "-c", cpOutScript, "sh", src, r}, nil, pw)
	pw.Close()
	xerr := <-extracted
	switch {
	case xerr != nil:
		return fmt.Errorf("mb cp: %w", xerr)
	case err != nil:
		return err
	case code != 0:
		return fmt.Errorf("mb cp: copy out of VM %s failed (exit %d): %s", name, code, msg)
	}
	return nil
}

// maxTarPadding is the most data taken after an archive's end marker.
const maxTarPadding = 1 << 20

// extractTar unpacks an archive whose top entry is named base into root,
// under the name top. Nothing is written outside root: names are checked,
// no path is created through a symbolic link, and a symbolic or hard link
// pointing outside root is refused.
func extractTar(r io.Reader, root, base, top string) error {
	tr := tar.NewReader(r)
	type dirMode struct {
		path string
		mode fs.FileMode
		mt   time.Time
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the archive from the guest: %w", err)
		}
		name, err := mapName(h.Name, base, top)
		if err != nil {
			return err
		}
		target := filepath.Join(root, filepath.FromSlash(name))
		if err := noLinkOnTheWay(root, name); err != nil {
			return err
		}
		mode := fs.FileMode(h.Mode) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if fi, err := os.Lstat(target); err != nil || !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", target)
			}
			dirs = append(dirs, dirMode{target, mode, h.ModTime})
		case tar.TypeReg:
			// O_NOFOLLOW: an existing link at the name is not written
			// through.
			_ = os.Remove(target)
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", target, err)
			}
			if err := os.Chmod(target, mode); err != nil {
				return err
			}
			_ = os.Chtimes(target, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			if escapes(name, h.Linkname, top) {
				return fmt.Errorf("refused: the guest's symbolic link %s points to %s, outside the destination %s; nothing past it was copied", h.Name, h.Linkname, filepath.Join(root, top))
			}
			_ = os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			lname, err := mapName(h.Linkname, base, top)
			if err != nil {
				return fmt.Errorf("refused: the guest's hard link %s points to %s, outside what is copied", h.Name, h.Linkname)
			}
			if err := noLinkOnTheWay(root, lname); err != nil {
				return err
			}
			_ = os.Remove(target)
			if err := os.Link(filepath.Join(root, filepath.FromSlash(lname)), target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: a special file (type %c) in the guest: not copied", h.Name, h.Typeflag)
		}
	}
	// Directory modes last, so a read-only directory was still writable
	// while its contents arrived; deepest first.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
		_ = os.Chtimes(dirs[i].path, dirs[i].mt, dirs[i].mt)
	}
	return nil
}

// mapName checks an archive name (relative, no ..) and replaces its
// first component, base, with top.
func mapName(name, base, top string) (string, error) {
	clean := path.Clean(strings.TrimSuffix(name, "/"))
	if path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("refused: the archive from the guest names %q, outside the destination", name)
	}
	first, rest, _ := strings.Cut(clean, "/")
	if first != base {
		return "", fmt.Errorf("refused: the archive from the guest names %q, not under %q", name, base)
	}
	if rest == "" {
		return top, nil
	}
	return top + "/" + rest, nil
}

// escapes reports whether a symbolic link at name with this target points
// outside what is copied (top, the copy's top entry).
func escapes(name, target, top string) bool {
	if path.IsAbs(target) {
		return true
	}
	p := path.Clean(path.Join(path.Dir(name), target))
	return p != top && !strings.HasPrefix(p, top+"/")
}

// noLinkOnTheWay refuses a name whose parent directories under root
// include a symbolic link (one an earlier entry may have made).
func noLinkOnTheWay(root, name string) error {
	parts := strings.Split(name, "/")
	p := root
	for _, c := range parts[:len(parts)-1] {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil // created by a later entry, or missing: Mkdir/Open fail
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("refused: %s would be written through the symbolic link %s", name, p)
		}
	}
	return nil
}

// copyBar shows bytes copied on a terminal.
type copyBar struct {
	w     io.Writer
	on    bool
	total int64
	n     atomic.Int64
	begin time.Time
	quit  chan struct{}
	done  chan struct{}
}

func newCopyBar(w io.Writer, label string, total int64) *copyBar {
	b := &copyBar{w: w, on: isTerminal(w), total: total, begin: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	if !b.on {
		close(b.done)
		return b
	}
	go func() {
		defer close(b.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-b.quit:
				if shown {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
			}
			n := b.n.Load()
			if time.Since(b.begin) < time.Second {
				continue // small copies show nothing
			}
			rate := float64(n) / time.Since(b.begin).Seconds()
			if b.total > 0 {
				fmt.Fprintf(w, "\r\033[K%s: %s / %s (%d%%) %s/s", label, mib(n), mib(b.total), min(100, n*100/max(b.total, 1)), mib(int64(rate)))
			} else {
				fmt.Fprintf(w, "\r\033[K%s: %s %s/s", label, mib(n), mib(int64(rate)))
			}
			shown = true
		}
	}()
	return b
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (b *copyBar) reader(r io.Reader) io.Reader { return &countReader{r: r, n: &b.n} }

func (b *copyBar) stop() {
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
	<-b.done
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
