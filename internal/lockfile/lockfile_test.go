package lockfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

func TestAcquireProbeRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	if held, _, err := Probe(path); held || err != nil {
		t.Fatalf("Probe of a missing lock = %v, %v", held, err)
	}
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	held, pid, err := Probe(path)
	if !held || pid != os.Getpid() || err != nil {
		t.Errorf("Probe while held = %v %d %v, want held by us", held, pid, err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := Probe(path); held {
		t.Error("still held after Release")
	}
}

// TestHeldByAnotherProcessAndFreedWhenItDies uses flock(1) from util-linux
// as the other holder, then kills it.
func TestHeldByAnotherProcessAndFreedWhenItDies(t *testing.T) {
	testenv.Tool(t, "flock", "util-linux")
	path := filepath.Join(t.TempDir(), "x.lock")
	os.WriteFile(path, nil, 0o600)
	cmd := exec.Command("flock", "-x", path, "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killGroup := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	defer killGroup()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if held, _, _ := Probe(path); held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flock never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	_, err := Acquire(path)
	var he *HeldError
	if !errors.As(err, &he) || !errors.Is(err, ErrLocked) || he.PID != cmd.Process.Pid {
		t.Fatalf("Acquire of a held lock = %v, want a HeldError naming PID %d", err, cmd.Process.Pid)
	}
	killGroup()
	cmd.Wait()
	// The kernel drops the lock once every holder (flock and its sleep) is gone.
	deadline = time.Now().Add(30 * time.Second)
	for {
		l, err := Acquire(path)
		if err == nil {
			l.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Acquire after the holder died = %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProbeNeverFailsAcquire probes a lock in a tight loop while it is
// taken and dropped: Probe takes a shared lock for an instant, and Acquire
// must not mistake that instant for a holder.
func TestProbeNeverFailsAcquire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := Probe(path); err != nil {
				t.Errorf("Probe: %v", err)
				return
			}
		}
	}()
	failed := 0
	for i := 0; i < 2000; i++ {
		l, err := Acquire(path)
		if err != nil {
			failed++
			continue
		}
		l.Release()
	}
	close(stop)
	<-done
	if failed > 0 {
		t.Errorf("%d of 2000 Acquire calls of a free lock failed while another goroutine probed it", failed)
	}
}
