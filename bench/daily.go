package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/creack/pty"
)

// dailyPart boots one mini VM and measures the daily loop: mb shell's
// round trip, keystroke echo on a guest terminal, and mb cp both ways.
func dailyPart() part {
	return part{name: "daily", rows: []rowDef{
		{id: "daily.shell", name: "daily: `mb shell demo -- true` round trip (no terminal)", unit: "ms"},
		{id: "daily.echo.p50", name: "daily: keystroke echo on `mb shell` with a guest terminal, median of the keystrokes", unit: "ms"},
		{id: "daily.echo.p99", name: "daily: keystroke echo on `mb shell` with a guest terminal, 99th percentile of the keystrokes", unit: "ms"},
		{id: "daily.cp.in", name: "daily: `mb cp` of a file into the guest (/tmp, tmpfs)", unit: "MiB/s"},
		{id: "daily.cp.out", name: "daily: `mb cp` of a file out of the guest", unit: "MiB/s"},
		{id: "daily.share.write", name: "daily: write to a host folder share in the guest (virtiofs, dd 64 MiB with fsync)", unit: "MiB/s"},
		{id: "daily.share.read", name: "daily: read from a host folder share in the guest (virtiofs, guest caches dropped)", unit: "MiB/s"},
		{id: "daily.share.host", name: "daily: the same write on the host, into the shared directory (dd 64 MiB with fsync)", unit: "MiB/s"},
	}, run: runDaily}
}

func runDaily(ctx context.Context, e *env, r *results) error {
	s, err := e.openSession(ctx, "mbbd", true)
	if err != nil {
		return err
	}
	defer s.close(e)
	mb := s.mb
	specPath, err := mb.WriteSpec("demo", "name: demo\nimage: mini\nmemory: 512M\nrestart: \"no\"\n")
	if err != nil {
		return err
	}
	shareDir := filepath.Join(e.work, "daily-share")
	if err := os.MkdirAll(shareDir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(shareDir)
	sctx, cancel := context.WithTimeout(ctx, bootTimeout)
	_, err = mb.Run(sctx, "start", "demo", "-f", specPath, "--share", shareDir+":/mnt/share")
	cancel()
	if err != nil {
		return err
	}

	var rtt []float64
	for range e.cfg.execRuns {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		t := time.Now()
		_, err := mb.Run(cctx, "shell", "demo", "--", "true")
		took := time.Since(t)
		cancel()
		if err != nil {
			return err
		}
		rtt = append(rtt, ms(took))
	}
	r.set("daily.shell", rtt)

	keys := 100
	if e.cfg.quick {
		keys = 20
	}
	echo, err := keystrokeEcho(ctx, mb.Command(ctx, "shell", "demo", "--", "sh", "-c", "echo '#ready'; exec cat"), keys)
	if err != nil {
		return fmt.Errorf("keystroke echo: %w", err)
	}
	r.set("daily.echo.p50", []float64{quantile(echo, 0.5)})
	r.set("daily.echo.p99", []float64{quantile(echo, 0.99)})
	r.note("daily.echo.p50", "%d keystrokes, each typed once the previous one's echo came back", len(echo))
	r.note("daily.echo.p99", "%d keystrokes", len(echo))

	size := 50 << 20
	if e.cfg.quick {
		size = 10 << 20
	}
	src := filepath.Join(e.work, "daily-cp")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(src)
	runs := max(1, e.cfg.runs/2)
	var in, out []float64
	for range runs {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		t := time.Now()
		_, err := mb.Run(cctx, "cp", src, "demo:/tmp/daily-cp")
		in = append(in, float64(size)/(1<<20)/time.Since(t).Seconds())
		if err == nil {
			t = time.Now()
			_, err = mb.Run(cctx, "cp", "demo:/tmp/daily-cp", src+".back")
			out = append(out, float64(size)/(1<<20)/time.Since(t).Seconds())
		}
		cancel()
		os.Remove(src + ".back")
		if err != nil {
			return err
		}
	}
	if err := shareThroughput(ctx, e, r, mb.Run, shareDir, runs); err != nil {
		return fmt.Errorf("share throughput: %w", err)
	}
	r.set("daily.cp.in", in)
	r.set("daily.cp.out", out)
	r.note("daily.cp.in", "%d MiB file, tar through mb-agent's streamed exec", size>>20)
	r.note("daily.cp.out", "%d MiB file", size>>20)
	return nil
}

// keystrokeEcho runs cmd (an mb shell) on a terminal and times n single
// keystrokes until each one's echo from the guest terminal comes back.
func keystrokeEcho(ctx context.Context, cmd *exec.Cmd, n int) ([]float64, error) {
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		return nil, err
	}
	defer func() {
		cmd.Process.Kill()
		ptmx.Close()
		cmd.Wait()
	}()
	got := make(chan byte, 4096)
	go func() {
		buf := make([]byte, 1024)
		for {
			k, err := ptmx.Read(buf)
			for _, b := range buf[:k] {
				got <- b
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	// waitFor reads until b arrives.
	waitFor := func(b byte, limit time.Duration) error {
		t := time.NewTimer(limit)
		defer t.Stop()
		for {
			select {
			case c, ok := <-got:
				if !ok {
					return fmt.Errorf("mb shell ended")
				}
				if c == b {
					return nil
				}
			case <-t.C:
				return fmt.Errorf("no echo of %q within %v", b, limit)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	// The session is up (and the local terminal raw, so every echo comes
	// from the guest's terminal) once the guest printed #ready.
	if err := waitFor('#', time.Minute); err != nil {
		return nil, err
	}
	if err := waitFor('\n', time.Minute); err != nil {
		return nil, err
	}
	var out []float64
	for i := range n {
		k := byte('a' + i%26)
		t := time.Now()
		if _, err := ptmx.Write([]byte{k}); err != nil {
			return nil, err
		}
		if err := waitFor(k, 30*time.Second); err != nil {
			return nil, err
		}
		out = append(out, ms(time.Since(t)))
	}
	return out, nil
}

// shareThroughput times 64 MiB written to and read from the share in the
// guest (on the guest's clock, /proc/uptime), and the same write on the
// host.
func shareThroughput(ctx context.Context, e *env, r *results, run func(context.Context, ...string) (string, error), dir string, runs int) error {
	const size = 64
	script := `read a _ < /proc/uptime; dd if=/dev/zero of=/mnt/share/f bs=1M count=64 conv=fsync 2>/dev/null; read b _ < /proc/uptime
sync; echo 3 > /proc/sys/vm/drop_caches; read c _ < /proc/uptime; dd if=/mnt/share/f of=/dev/null bs=1M 2>/dev/null; read d _ < /proc/uptime
rm -f /mnt/share/f; echo $a $b $c $d`
	var w, rd, host []float64
	for range runs {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := run(cctx, "exec", "demo", "--", "sh", "-c", script)
		cancel()
		if err != nil {
			return err
		}
		var a, b, c, d float64
		if _, err := fmt.Sscan(out, &a, &b, &c, &d); err != nil {
			return fmt.Errorf("guest timings %q: %w", out, err)
		}
		w = append(w, size/max(b-a, 0.01))
		rd = append(rd, size/max(d-c, 0.01))
		t := time.Now()
		if err := writeSynced(filepath.Join(dir, "host"), size<<20); err != nil {
			return err
		}
		host = append(host, size/time.Since(t).Seconds())
		os.Remove(filepath.Join(dir, "host"))
	}
	r.set("daily.share.write", w)
	r.set("daily.share.read", rd)
	r.set("daily.share.host", host)
	r.note("daily.share.write", "guest clock at 10 ms resolution")
	return nil
}

// writeSynced writes n zero bytes to path in 1 MiB pieces and fsyncs.
func writeSynced(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < n; i += len(buf) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
