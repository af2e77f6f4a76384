package failtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/vmhost"
)

// fuzzFor is how long each socket is fuzzed.
func fuzzFor() time.Duration {
	if testing.Short() {
		return 5 * time.Second
	}
	return 20 * time.Second
}

// rssLimit is the growth of a process's resident memory under fuzzing
// that counts as unbounded. Garbage lines are capped at 1 MiB per
// connection and a few connections are open at once, so real growth stays
// far below it; a leak per bad request does not.
const rssLimit = 128 << 20

// fuzzers is the number of concurrent garbage senders per socket.
const fuzzers = 4

// fuzzStats counts what the fuzzers and the good-request loop did.
type fuzzStats struct {
	bad, good, goodFailed atomic.Int64
	failures              lineWriter
}

// memWatch samples a process's RSS until stopped and keeps the first and
// the highest value.
type memWatch struct {
	pid         int
	first, peak atomic.Uint64
}

func watchMemory(ctx context.Context, pid int) *memWatch {
	w := &memWatch{pid: pid}
	if v, err := procfs.RSS(pid); err == nil {
		w.first.Store(v)
		w.peak.Store(v)
	}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if v, err := procfs.RSS(pid); err == nil && v > w.peak.Load() {
					w.peak.Store(v)
				}
			}
		}
	}()
	return w
}

func (w *memWatch) check(t *testing.T, what string) {
	t.Helper()
	first, peak := w.first.Load(), w.peak.Load()
	t.Logf("%s RSS: %.1f MiB at the start, peak %.1f MiB", what, float64(first)/(1<<20), float64(peak)/(1<<20))
	if first == 0 {
		t.Errorf("%s: no memory sample", what)
	}
	if peak > first+rssLimit {
		t.Errorf("%s memory grew from %.1f MiB to %.1f MiB under fuzzing (limit +%d MiB)", what,
			float64(first)/(1<<20), float64(peak)/(1<<20), rssLimit>>20)
	}
}

// vmhostGarbage sends one piece of hostile input to a vmhost socket. It
// never sends a well-formed stop, force_stop or exec.
func vmhostGarbage(ctx context.Context, rnd *rand.Rand, sock string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	switch rnd.IntN(10) {
	case 0: // random bytes, then an abrupt close
		_, _ = conn.Write(randomBytes(rnd, 1+rnd.IntN(4096)))
	case 1: // random lines, replies read
		for range 1 + rnd.IntN(5) {
			_, _ = conn.Write(append(randomBytes(rnd, rnd.IntN(200)), '\n'))
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		discard(conn)
	case 2: // half-written line, abrupt close
		_, _ = conn.Write([]byte(`{"method":"sta`))
	case 3: // half-written line, held open a moment
		_, _ = conn.Write([]byte(`{"method":"info","timeout_sec`))
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
	case 4: // connect and close
	case 5: // wrong types and unknown methods; the connection must stay usable
		for _, l := range []string{`{"method":123}`, `{"method":"nope"}`, `[1,2,3]`, `{"method":"status","timeout_seconds":"x"}`,
			`{"method":"status","argv":{"a":1}}`, `null`, `"status"`, strings.Repeat("[", 10000), `{"method":"status","unknown_field":1}`} {
			_, _ = conn.Write([]byte(l + "\n"))
		}
		_, _ = conn.Write([]byte(`{"method":"status"}` + "\n"))
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		discard(conn)
	case 6: // a line over the 1 MiB limit (rarely: it costs CPU)
		if rnd.IntN(8) == 0 {
			_, _ = conn.Write(append([]byte(`{"method":"status","x":"`), randomASCII(rnd, vmhost.MaxRequestSize+1024)...))
		}
	case 7: // pipelined requests whose replies are never read
		for range 200 {
			if _, err := conn.Write([]byte(`{"method":"info"}` + "\n")); err != nil {
				break
			}
		}
	case 8: // bytes that are not UTF-8 inside a JSON string
		_, _ = conn.Write(append(append([]byte(`{"method":"`), 0xff, 0xfe, 0x00, '"', '}'), '\n'))
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		discard(conn)
	case 9: // half a close: write side shut, then wait for the reply
		_, _ = conn.Write([]byte(`{"method":"status"}`))
		if uc, ok := conn.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		discard(conn)
	}
}

// fuzzVM is the VM running while mb.sock is fuzzed.
const fuzzVM = "fz"

// daemonGarbage sends one piece of hostile input to the daemon's HTTP
// socket. It never sends a well-formed request that changes a VM.
func daemonGarbage(ctx context.Context, rnd *rand.Rand, sock string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	readSome := func() {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		discard(conn)
	}
	switch rnd.IntN(12) {
	case 0:
		_, _ = conn.Write(randomBytes(rnd, 1+rnd.IntN(4096)))
	case 1:
		_, _ = conn.Write([]byte("GET /v1/v"))
	case 9: // a following stream, dropped abruptly
		path := "/v1/events?follow=1"
		if rnd.IntN(2) == 0 {
			path = "/v1/vms/" + fuzzVM + "/logs?follow=1&source=vmhost"
		}
		_, _ = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: mb\r\n\r\n", path)
		_ = conn.SetReadDeadline(time.Now().Add(time.Duration(50+rnd.IntN(300)) * time.Millisecond))
		discard(conn)
	case 10: // garbage exec requests on the running VM (the fake has no agent)
		body := randomBytes(rnd, rnd.IntN(500))
		_, _ = fmt.Fprintf(conn, "POST /v1/vms/%s/exec HTTP/1.1\r\nHost: mb\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", fuzzVM, len(body))
		_, _ = conn.Write(body)
		readSome()
	case 11: // pipelined requests, replies never read
		for range 50 {
			if _, err := conn.Write([]byte("GET /v1/vms HTTP/1.1\r\nHost: mb\r\n\r\n")); err != nil {
				break
			}
		}
	case 2: // a huge header
		_, _ = fmt.Fprintf(conn, "GET /v1/vms HTTP/1.1\r\nHost: mb\r\nX-Junk: %s\r\n\r\n", randomASCII(rnd, 1<<20))
		readSome()
	case 3: // a body shorter than announced
		_, _ = conn.Write([]byte("POST /v1/vms HTTP/1.1\r\nHost: mb\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n\r\nname: x"))
	case 4: // unknown paths and VMs
		_, _ = fmt.Fprintf(conn, "GET /v1/vms/%s/%s HTTP/1.1\r\nHost: mb\r\n\r\n", randomASCII(rnd, 1+rnd.IntN(40)), randomASCII(rnd, rnd.IntN(10)))
		readSome()
	case 5: // garbage bodies for a VM that does not exist
		body := randomBytes(rnd, rnd.IntN(2000))
		_, _ = fmt.Fprintf(conn, "POST /v1/vms/nosuchvm-%d/start HTTP/1.1\r\nHost: mb\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", rnd.IntN(1000), len(body))
		_, _ = conn.Write(body)
		readSome()
	case 6: // a create whose spec is garbage
		body := []byte("name: [" + string(randomASCII(rnd, rnd.IntN(500))))
		_, _ = fmt.Fprintf(conn, "POST /v1/vms HTTP/1.1\r\nHost: mb\r\nContent-Type: application/yaml\r\nContent-Length: %d\r\n\r\n", len(body))
		_, _ = conn.Write(body)
		readSome()
	case 7: // headers held open, never finished
		_, _ = conn.Write([]byte("GET /v1/vms HTTP/1.1\r\nHost: mb\r\n"))
		time.Sleep(time.Duration(rnd.IntN(500)) * time.Millisecond)
	case 8: // connect and close
	}
}

func randomBytes(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.UintN(256))
	}
	return b
}

func randomASCII(rnd *rand.Rand, n int) []byte {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789-_.%"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rnd.IntN(len(chars))]
	}
	return b
}

// fuzz runs fuzzers goroutines of garbage against sock and a good-request
// loop (good returns an error when a good request fails) until d passes.
func fuzz(ctx context.Context, st *fuzzStats, d time.Duration, garbage func(context.Context, *rand.Rand, string), sock string, good func(context.Context) error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for i := range fuzzers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			for ctx.Err() == nil {
				garbage(ctx, rnd, sock)
				st.bad.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			gctx, gcancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := good(gctx)
			gcancel()
			st.good.Add(1)
			if err != nil {
				st.goodFailed.Add(1)
				st.failures.add("%s: %v", time.Now().Format("15:04:05.000"), err)
			}
		}
	}()
	wg.Wait()
}

func (st *fuzzStats) check(t *testing.T, what string) {
	t.Helper()
	t.Logf("%s: %d garbage connections, %d good requests, %d failed", what, st.bad.Load(), st.good.Load(), st.goodFailed.Load())
	if st.good.Load() < 10 {
		t.Errorf("%s: only %d good requests were made", what, st.good.Load())
	}
	if n := st.goodFailed.Load(); n > 0 {
		t.Errorf("%s: %d good requests failed under fuzzing: %s", what, n, strings.Join(st.failures.all(), "; "))
	}
}

// vmhostGood asks for status and wants the VM running.
func vmhostGood(sock string) func(context.Context) error {
	c := vmhost.NewClient(sock)
	return func(ctx context.Context) error {
		resp, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus})
		if err != nil {
			return err
		}
		if resp.State != vmhost.StateRunning {
			return fmt.Errorf("state %q", resp.State)
		}
		return nil
	}
}

// TestSocketFuzzVMHost fuzzes a stand-alone fake vmhost's socket.
func TestSocketFuzzVMHost(t *testing.T) {
	t.Parallel() // with TestSocketFuzzDaemon: 20 s instead of 40
	bin := needVMHost(t)
	h := newHome(t)
	dir := filepath.Join(h, "vms", "z1")
	v, err := rig.StartVMHost(ctxFor(t, time.Minute), bin, dir, h, nil, "--backend", "fake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	ctx := ctxFor(t, 5*time.Minute)
	mem := watchMemory(ctx, v.PID())
	var st fuzzStats
	fuzz(ctx, &st, fuzzFor(), vmhostGarbage, v.Socket(), vmhostGood(v.Socket()))
	st.check(t, "vmhost.sock")
	mem.check(t, "vmhost")
	if err := v.Stop(ctxFor(t, time.Minute), vmhost.ModeGraceful); err != nil {
		t.Fatalf("the fuzzed vmhost does not stop cleanly: %v", err)
	}
	if v.ExitCode() != 0 {
		t.Errorf("vmhost exit code %d after fuzzing and a clean stop", v.ExitCode())
	}
}

// TestSocketFuzzDaemon fuzzes mb.sock and, at the same time, the vmhost
// socket of a fake VM the daemon runs; both keep answering good requests
// and the garbage creates no VM.
func TestSocketFuzzDaemon(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	mb, d := mbFor(t, h)
	run(t, mb, "start", fuzzVM, "-f", fakeSpec(t, mb, fuzzVM, "no"))
	dir := mb.VMDir(fuzzVM)
	before := snapshot(t, h)
	ctx := ctxFor(t, 5*time.Minute)
	dmem := watchMemory(ctx, d.PID())
	vmem := watchMemory(ctx, vmhostPID(t, dir))
	baseFDs := fdCount(t, d.PID())

	var dst, vst fuzzStats
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		fuzz(ctx, &dst, fuzzFor(), daemonGarbage, mb.Socket(), func(ctx context.Context) error {
			body, err := rig.DaemonGet(ctx, mb.Socket(), "/v1/vms")
			if err != nil {
				return err
			}
			var vms []rig.VM
			if err := json.Unmarshal(body, &vms); err != nil {
				return fmt.Errorf("GET /v1/vms: %w", err)
			}
			if len(vms) != 1 || vms[0].Name != "fz" || vms[0].State != "running" {
				return fmt.Errorf("GET /v1/vms = %+v, want fz running", vms)
			}
			return nil
		})
	}()
	go func() {
		defer wg.Done()
		sock := filepath.Join(dir, "vmhost.sock")
		fuzz(ctx, &vst, fuzzFor(), vmhostGarbage, sock, vmhostGood(sock))
	}()
	wg.Wait()
	dst.check(t, "mb.sock")
	vst.check(t, "the daemon's vmhost.sock")
	dmem.check(t, "daemon")
	vmem.check(t, "vmhost")

	vms, err := mb.List(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 1 {
		t.Errorf("after fuzzing, mb ls lists %d VMs: %+v", len(vms), vms)
	}
	// Every garbage connection is closed by now: the daemon's descriptors
	// come back (idle HTTP connections may take a moment to be dropped).
	err = rig.Poll(ctxFor(t, 40*time.Second), 200*time.Millisecond, "the daemon's descriptors to come back", func() (bool, error) {
		n, err := procfs.FDCount(d.PID())
		return err == nil && n <= baseFDs, fmt.Errorf("%d open, %d before", n, baseFDs)
	})
	if err != nil {
		t.Error(err)
	}
	run(t, mb, "stop", "fz")
	waitProcesses(t, h, 0, 0, time.Minute)
	checkIntact(t, h, before)
	// A good command still works on the same sockets.
	run(t, mb, "start", "fz", "-f", fakeSpec(t, mb, "fz", "no"))
	run(t, mb, "stop", "fz")
}
