package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// The daily loop on one booted mini VM: streamed exec, the interactive
// shell, copies and (last, since it restarts the VM) mb set.
func TestQEMUDailyLoop(t *testing.T) {
	parent := requireVM(t)
	rwDir, roDir := t.TempDir(), t.TempDir()
	parent.ok("start", "demo", "--share", rwDir+":/mnt/rw", "--share", roDir+":/mnt/ro:ro")
	// sub runs a subtest with the environment failing that subtest (not
	// the parent, whose FailNow must not run on a subtest's goroutine).
	sub := func(name string, f func(t *testing.T, e *testEnv, guestHas func(string) bool)) {
		t.Run(name, func(t *testing.T) {
			e := *parent
			e.t = t
			f(t, &e, func(marker string) bool {
				return strings.Contains(e.ok("exec", "demo", "--", "ps", "-o", "pid,args"), marker)
			})
		})
	}

	sub("exec streams output", func(t *testing.T, e *testEnv, guestHas func(string) bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// A line a second for two minutes: the first line must arrive
		// while the command still runs.
		cmd := e.command(ctx, "exec", "demo", "--", "sh", "-c", `: stream-marker; i=0; while [ $i -lt 120 ]; do echo line $i; i=$((i+1)); sleep 1; done`)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "line 0\n" {
			t.Fatalf("first line %q, %v; stderr %s", line, err, errb.String())
		}
		if !guestHas("stream-marker") {
			t.Fatalf("the command is not running in the guest after its first line")
		}
		// A killed mb exec (no chance to clean up) leaves nothing behind
		// in the guest.
		cmd.Process.Kill()
		cmd.Wait()
		e.eventually("the streamed command to be gone from the guest", func() bool { return !guestHas("stream-marker") })
	})

	sub("exec stdin 20 MiB and exit code", func(t *testing.T, e *testEnv, _ func(string) bool) {
		stdin := make([]byte, 20<<20)
		rand.Read(stdin)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := e.command(ctx, "exec", "demo", "--", "sh", "-c", "sha256sum; echo to-stderr >&2; exit 3")
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("mb exec: %v, want exit 3\n%s", err, errb.String())
		}
		sum := sha256.Sum256(stdin)
		if got, _, _ := strings.Cut(out.String(), " "); got != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256 in the guest %q, want %x", out.String(), sum)
		}
		if errb.String() != "to-stderr\n" {
			t.Errorf("stderr %q, want to-stderr", errb.String())
		}
	})

	sub("shell on a terminal", func(t *testing.T, e *testEnv, guestHas func(string) bool) {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		defer tty.Close()
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		s := &shellSession{t: t, ptmx: ptmx, tty: tty, cmd: e.command(ctx, "shell", "demo"), done: make(chan struct{})}
		s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = tty, tty, tty
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(s.done)
			buf := make([]byte, 4096)
			for {
				n, err := ptmx.Read(buf)
				s.mu.Lock()
				s.out.Write(buf[:n])
				s.mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = s.cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			s.cmd.Process.Kill()
			<-exited
		})

		// A typed command runs and its output comes back; $((...)) makes
		// the output differ from the echo of what was typed.
		s.waitFor("typed-5", "echo typed-$((2+3))\r")
		s.waitFor("30 100", "stty size\r")
		// A resize reaches the guest's terminal. The resize and the
		// typed line go separately: type again until the new size shows.
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		s.waitFor("40 120", "stty size\r")

		// Ctrl-C reaches the guest's foreground program.
		s.typ("sleep 100\r")
		e.eventually("sleep 100 to run in the guest", func() bool { return guestHas("sleep 100") })
		s.typ("\x03")
		e.eventually("sleep 100 to be gone from the guest after Ctrl-C", func() bool { return !guestHas("sleep 100") })

		s.typ("exit 3\r")
		select {
		case <-exited:
			var ee *exec.ExitError
			if !errors.As(waitErr, &ee) || ee.ExitCode() != 3 {
				t.Errorf("mb shell after exit 3: %v, want exit code 3\n%s", waitErr, s.output())
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("mb shell did not exit after exit 3:\n%s", s.output())
		}
		// The local terminal is back in its mode from before.
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), ioctlGetTermios)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ECHO == 0 {
			t.Errorf("the terminal was left in raw mode (lflag %#x)", tio.Lflag)
		}
	})

	sub("cp a big file in and out", func(t *testing.T, e *testEnv, _ func(string) bool) {
		dir := t.TempDir()
		data := make([]byte, 50<<20)
		rand.Read(data)
		src := filepath.Join(dir, "big")
		if err := os.WriteFile(src, data, 0o640); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		e.ok("cp", src, "demo:/tmp/big")
		if got, _, _ := strings.Cut(e.ok("exec", "demo", "--", "sha256sum", "/tmp/big"), " "); got != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256 in the guest %q, want %x", got, sum)
		}
		back := filepath.Join(dir, "back")
		e.ok("cp", "demo:/tmp/big", back)
		got, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sum {
			t.Errorf("the file copied back differs (%d bytes)", len(got))
		}
		if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("mode of the file copied back: %v %v, want 0640", fi.Mode(), err)
		}
		e.ok("exec", "demo", "--", "rm", "/tmp/big")
	})

	sub("cp a tree with modes, and an escaping link refused", func(t *testing.T, e *testEnv, _ func(string) bool) {
		dir := t.TempDir()
		tree := filepath.Join(dir, "tree")
		for _, d := range []struct {
			path string
			mode os.FileMode
		}{{"", 0o750}, {"sub", 0o700}} {
			if err := os.MkdirAll(filepath.Join(tree, d.path), 0o700); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(filepath.Join(tree, d.path), d.mode)
		}
		files := map[string]os.FileMode{"run.sh": 0o755, "sub/secret": 0o600, "sub/shared": 0o644}
		for name, mode := range files {
			if err := os.WriteFile(filepath.Join(tree, name), []byte("content of "+name), mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(filepath.Join(tree, name), mode)
		}
		if err := os.Symlink("run.sh", filepath.Join(tree, "link")); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(tree, "sub"), 0o700)
		os.Chmod(tree, 0o750)
		if r := e.mb("cp", tree, "demo:/tmp/tree"); r.code != 2 || !strings.Contains(r.stderr, "-r") {
			t.Errorf("mb cp of a directory without -r: %s", r)
		}
		e.ok("cp", "-r", tree, "demo:/tmp/")
		if out := e.ok("exec", "demo", "--", "sh", "-c", "cd /tmp/tree && stat -c '%a %n' . run.sh sub sub/secret && readlink link && cat sub/shared"); out != "750 .\n755 run.sh\n700 sub\n600 sub/secret\nrun.sh\ncontent of sub/shared" {
			t.Errorf("the tree in the guest:\n%s", out)
		}
		out := filepath.Join(dir, "out")
		e.ok("cp", "-r", "demo:/tmp/tree", out)
		for name, mode := range files {
			fi, err := os.Stat(filepath.Join(out, name))
			if err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s copied out: %v %v, want mode %v", name, fi, err, mode)
			}
		}
		for name, mode := range map[string]os.FileMode{"": 0o750, "sub": 0o700} {
			if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Mode().Perm() != mode {
				t.Errorf("directory %q copied out: %v %v, want mode %v", name, fi, err, mode)
			}
		}
		if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "run.sh" {
			t.Errorf("link copied out: %q %v", l, err)
		}

		for _, target := range []string{"/etc/passwd", "../../outside"} {
			e.ok("exec", "demo", "--", "sh", "-c", "rm -rf /tmp/evil && mkdir -p /tmp/evil/d && echo x > /tmp/evil/a && ln -s "+target+" /tmp/evil/d/l")
			evil := filepath.Join(dir, "evil")
			r := e.mb("cp", "-r", "demo:/tmp/evil", evil)
			if r.code == 0 || !strings.Contains(r.stderr, "refused") {
				t.Errorf("mb cp of a tree with a link to %s: %s", target, r)
			}
			if _, err := os.Lstat(filepath.Join(evil, "d", "l")); err == nil {
				t.Errorf("the link to %s was made on the host", target)
			}
			os.RemoveAll(evil)
		}
	})

	sub("shell without a terminal", func(t *testing.T, e *testEnv, _ func(string) bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := e.command(ctx, "shell", "demo")
		cmd.Stdin = strings.NewReader("tty || echo no-tty\necho piped-$((3+4))\nexit 4\n")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 4 {
			t.Fatalf("mb shell with piped stdin: %v, want exit 4\n%s", err, errb.String())
		}
		if !strings.Contains(out.String(), "no-tty") || !strings.Contains(out.String(), "piped-7") {
			t.Errorf("mb shell with piped stdin printed %q", out.String())
		}
	})

	sub("host folder shares", func(t *testing.T, e *testEnv, _ func(string) bool) {
		if err := os.WriteFile(filepath.Join(rwDir, "from-host"), []byte("written on the host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(roDir, "ro-file"), []byte("read-only share\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := e.ok("exec", "demo", "--", "cat", "/mnt/rw/from-host", "/mnt/ro/ro-file"); out != "written on the host\nread-only share\n" {
			t.Errorf("the guest read %q from the shares", out)
		}
		e.ok("exec", "demo", "--", "sh", "-c", "echo written in the guest > /mnt/rw/from-guest")
		if b, err := os.ReadFile(filepath.Join(rwDir, "from-guest")); err != nil || string(b) != "written in the guest\n" {
			t.Errorf("the host read %q, %v from the guest's write", b, err)
		}
		r := e.mb("exec", "demo", "--", "sh", "-c", "echo no > /mnt/ro/new")
		if r.code == 0 || !strings.Contains(r.stderr, "Read-only") {
			t.Errorf("a write to the read-only share: %s", r)
		}
		if _, err := os.Stat(filepath.Join(roDir, "new")); err == nil {
			t.Errorf("the write to the read-only share reached the host")
		}
	})

	// Last: it restarts the VM.
	sub("set cpus and memory", func(t *testing.T, e *testEnv, _ func(string) bool) {
		if r := e.mb("set", "demo", "--cpus", "2"); r.code == 0 || !strings.Contains(r.stderr, "mb stop demo") {
			t.Errorf("mb set on a running VM: %s", r)
		}
		if r := e.mb("set", "demo", "--cpus", "0"); r.code != 2 {
			t.Errorf("mb set --cpus 0: %s", r)
		}
		before := e.ok("exec", "demo", "--", "nproc")
		e.ok("stop", "demo")
		e.ok("set", "demo", "--cpus", "2", "--memory", "700M")
		e.ok("start", "demo")
		if got := strings.TrimSpace(e.ok("exec", "demo", "--", "nproc")); got != "2" {
			t.Errorf("nproc after mb set --cpus 2: %q (before: %q)", got, before)
		}
		var kb int
		for _, l := range strings.Split(e.ok("exec", "demo", "--", "cat", "/proc/meminfo"), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				fmt.Sscan(strings.TrimPrefix(l, "MemTotal:"), &kb)
			}
		}
		// 700 MiB less what the kernel keeps for itself; the default is 512M.
		if kb < 600<<10 || kb > 700<<10 {
			t.Errorf("MemTotal after mb set --memory 700M: %d kB", kb)
		}
	})

}

// shellSession is mb shell running on a pseudo-terminal of the test.
type shellSession struct {
	t    *testing.T
	ptmx *os.File
	tty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (s *shellSession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *shellSession) typ(text string) {
	s.t.Helper()
	if _, err := s.ptmx.Write([]byte(text)); err != nil {
		s.t.Fatalf("type %q: %v", text, err)
	}
}

// waitFor polls the session's output for want, typing retype (when set)
// every few seconds meanwhile, for up to two minutes.
func (s *shellSession) waitFor(want, retype string) {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	next := time.Now()
	for !strings.Contains(s.output(), want) {
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q in the shell's output within 2 minutes:\n%s", want, s.output())
		}
		if retype != "" && time.Now().After(next) {
			s.typ(retype)
			next = time.Now().Add(3 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
