package qemu

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/vm/spec"
)

// ownerEnv makes the test binary act as a VM's owner process (like vmhost):
// it starts a VM in the directory named by the variable, prints
// "started <qemu pid>" and blocks until it is killed.
const ownerEnv = "MB_QEMU_TEST_OWNER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(ownerEnv); dir != "" {
		os.Exit(runOwner(dir))
	}
	os.Exit(m.Run())
}

func runOwner(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()
	c, err := Start(ctx, Options{
		Dir:    dir,
		Home:   os.Getenv("MB_HOME"),
		Logger: log,
		Spec:   &spec.Spec{Name: "qtest-owner", Image: "mini", Memory: 256 << 20},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "owner: start:", err)
		return 1
	}
	fmt.Printf("started %d\n", c.PID())
	_ = c.Wait()
	return 0
}

// TestOwnerKilledTakesQEMUDown: after kill -9 of the process that started
// QEMU (vmhost), QEMU is gone too (Pdeathsig).
func TestOwnerKilledTakesQEMUDown(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	dir := vmDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ownerEnv+"="+dir, "MB_HOME="+img.home)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var qemuPID int
	select {
	case line, ok := <-lines:
		pid, err := strconv.Atoi(strings.TrimPrefix(line, "started "))
		if !ok || err != nil || pid <= 0 {
			t.Fatalf("owner said %q (open %v), want \"started <pid>\"", line, ok)
		}
		qemuPID = pid
	case <-time.After(bootDeadline):
		t.Fatalf("owner did not start a VM within %s", bootDeadline)
	}
	pidData, err := os.ReadFile(dir + "/" + pidFileName)
	if err != nil || strings.TrimSpace(string(pidData)) != strconv.Itoa(qemuPID) {
		t.Fatalf("%s = %q (%v), want %d", pidFileName, pidData, err, qemuPID)
	}
	if processGone(qemuPID) {
		t.Fatalf("qemu pid %d is not running before the owner is killed", qemuPID)
	}
	t.Cleanup(func() {
		if !processGone(qemuPID) {
			_ = syscallKill(qemuPID)
		}
	})

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(stopDeadline)
	for !processGone(qemuPID) {
		if time.Now().After(deadline) {
			t.Fatalf("qemu pid %d still runs %s after its owner was killed with SIGKILL", qemuPID, stopDeadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
