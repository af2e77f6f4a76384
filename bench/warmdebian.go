package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/vm/snapshot"
)

// debianTimeout bounds each command of the Debian part: a cold Debian boot
// under TCG on a busy 2-core machine takes about a minute, its first boot
// (cloud-init) several.
const debianTimeout = 10 * time.Minute

// debianMarker is a file in the guest's /dev/shm (RAM only): a cold boot
// cannot have it, a restore of the memory it was written to must.
const debianMarker = "/dev/shm/mb-bench-warm"

// sshReadyNote defines SSH-ready, the same for every row of the part.
const sshReadyNote = "SSH-ready: wall time from issuing `mb start` (which returns when the guest agent answers) until `mb ssh deb -- true` first exits 0; mb ssh waits by itself, with a key-authenticated SSH handshake every 1 s"

// settleCmd waits, in the guest, until boot has finished: systemd has no
// job left and cloud-init is done (a degraded system counts as settled).
const settleCmd = "systemctl is-system-running --wait >/dev/null; cloud-init status --wait >/dev/null; true"

// warmDebianPart compares restoring the Debian test image from a snapshot
// with booting it cold, both to SSH-ready, in alternating pairs on one VM
// (512 MiB): cold `mb start` after `mb stop`, a snapshot of the running
// VM, `mb stop`, then `mb start --from` that snapshot. A marker written to
// the guest's RAM-only /dev/shm before the snapshot checks that every cold
// boot is cold and every restore restored the memory. Each pair also
// suspends the restored VM and resumes it with `mb start`.
func warmDebianPart() part {
	return part{name: "warmdebian", rows: []rowDef{
		{id: "warmdebian.cold", name: "warmdebian: cold `mb start` of the stopped Debian VM (512 MiB) to SSH-ready", unit: "ms", note: sshReadyNote},
		{id: "warmdebian.from", name: "warmdebian: `mb start --from SNAP` of the stopped VM (restore of a snapshot) to SSH-ready", unit: "ms",
			note: "the snapshot is taken once the guest has finished booting (`systemctl is-system-running --wait`, `cloud-init status --wait`)"},
		{id: "warmdebian.ratio", name: "warmdebian: ratio restore / cold, both to SSH-ready (of medians; spread of per-pair ratios)", unit: "×", target: &target{"<=", 0.1}},
		{id: "warmdebian.suspend", name: "warmdebian: `mb suspend` of the restored VM until the command returns", unit: "ms"},
		{id: "warmdebian.resume", name: "warmdebian: `mb start` of the suspended VM (resume) to SSH-ready", unit: "ms"},
		{id: "warmdebian.resume_ratio", name: "warmdebian: ratio resume / cold, both to SSH-ready (of medians; spread of per-pair ratios)", unit: "×"},
		{id: "warmdebian.ssh", name: "warmdebian: `mb ssh deb -- true` on the running VM, SSH already up (the floor of every SSH-ready time)", unit: "ms"},
		{id: "warmdebian.snapshot_time", name: "warmdebian: `mb snapshot save` of the running Debian VM until it returns", unit: "ms"},
		{id: "warmdebian.snapshot_size", name: "warmdebian: snapshot size on disk (state + sparse RAM copy + frozen disk layer)", unit: "MiB"},
	}, run: runWarmDebian}
}

// debianCache is the directory of the Debian test image that `make
// debian-image` builds ($MB_CACHE, as for the tests, or
// /var/cache/mb-test/debian), or an error saying how to build it.
func debianCache() (string, error) {
	dir := os.Getenv("MB_CACHE")
	if dir == "" {
		dir = "/var/cache/mb-test/debian"
	}
	for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("the Debian test image is missing (%w): build it with `make debian-image`", err)
		}
	}
	return dir, nil
}

func runWarmDebian(ctx context.Context, e *env, r *results) error {
	src, err := debianCache()
	if err != nil {
		return err
	}
	s, err := e.openSession(ctx, "mbbd", true)
	if err != nil {
		return err
	}
	defer s.close(e)
	mb := s.mb
	const name = "deb"
	run := func(args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, debianTimeout)
		defer cancel()
		return mb.Run(cctx, args...)
	}
	timed := func(args ...string) (time.Duration, error) {
		t0 := time.Now()
		_, err := run(args...)
		return time.Since(t0), err
	}
	// toSSH runs `mb start args...` and then `mb ssh -- true` until it
	// succeeds, and returns the time from the start to that success.
	toSSH := func(args ...string) (time.Duration, error) {
		t0 := time.Now()
		if _, err := run(append(append([]string{"start", name}, args...), "--timeout", debianTimeout.String())...); err != nil {
			return 0, err
		}
		started := time.Since(t0)
		if err := sshReady(ctx, e.log, mb, name); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		e.log.Info("warmdebian to SSH-ready", "start", args, "start_ms", ms(started), "ssh_ms", ms(d-started))
		return d, nil
	}
	marker := func() (string, error) {
		out, err := run("ssh", name, "--", "cat "+debianMarker+" 2>/dev/null || echo none")
		return strings.TrimSpace(out), err
	}

	// Import the image and boot it once (cloud-init's first boot), untimed.
	if _, err := run("image", "import", filepath.Join(src, "disk.qcow2"), "--name", "debian",
		"--kernel", filepath.Join(src, "vmlinuz"), "--initrd", filepath.Join(src, "initrd.img"),
		"--cmdline", "root=/dev/vda rw console=ttyS0 net.ifnames=0", "--agent", "qemu-ga"); err != nil {
		return err
	}
	specPath, err := mb.WriteSpec(name, "name: deb\nimage: debian\nmemory: 512M\ncpus: 1\nrestart: \"no\"\n")
	if err != nil {
		return err
	}
	first, err := toSSH("-f", specPath)
	if err != nil {
		return fmt.Errorf("first boot: %w", err)
	}
	e.noteAccel(mb.VMDir(name))
	if _, err := run("ssh", name, "--", "cloud-init status --wait >/dev/null"); err != nil {
		return fmt.Errorf("wait for cloud-init's first boot: %w", err)
	}
	// Quick mode saves a boot: its one cold sample is the first boot,
	// which also runs cloud-init (so it errs on the slow side).
	// Five pairs, as every comparison in the bench has (three gave a
	// confidence interval no narrower than their spread).
	pairs := max(e.cfg.runs, 5)
	if e.cfg.quick {
		pairs = 1
		r.note("warmdebian.cold", "quick mode: the first boot (with cloud-init)")
	} else if _, err := run("stop", name); err != nil {
		return err
	}
	var cold, from, resume, susp, sshT, snapTime, snapSize, fromRatios, resumeRatios []float64
	for i := range pairs {
		c := first
		if i > 0 || !e.cfg.quick {
			if c, err = toSSH(); err != nil {
				return fmt.Errorf("cold start %d: %w", i, err)
			}
		}
		if m, err := marker(); err != nil || m != "none" {
			return fmt.Errorf("cold start %d was not cold: %s holds %q (%v)", i, debianMarker, m, err)
		}
		// The snapshot is of a guest that has finished booting, as a
		// pre-warmed machine's is: SSH answers while systemd and
		// cloud-init still start services for some seconds, and a
		// snapshot taken then resumes that work, competing with the
		// SSH handshake (measured: 2.6 s to SSH-ready against 1.7 s).
		if _, err := run("ssh", name, "--", settleCmd); err != nil {
			return fmt.Errorf("let the guest settle: %w", err)
		}
		want := fmt.Sprintf("pair-%d-%d", i, time.Now().UnixNano())
		if _, err := run("ssh", name, "--", "echo "+want+" >"+debianMarker); err != nil {
			return fmt.Errorf("write the marker: %w", err)
		}
		sst, err := timed("ssh", name, "--", "true")
		if err != nil {
			return fmt.Errorf("ssh %d: %w", i, err)
		}
		snap := fmt.Sprintf("s%d", i)
		st, err := timed("snapshot", "save", name, snap)
		if err != nil {
			return fmt.Errorf("snapshot %d: %w", i, err)
		}
		sdir := snapshot.Dir(mb.VMDir(name), snap)
		snapTime, sshT = append(snapTime, ms(st)), append(sshT, ms(sst))
		snapSize = append(snapSize, mib(diskUsage(sdir, snapshot.SnapState, snapshot.SnapMemory, snapshot.SnapManifest, snapshot.SnapDisk)))
		if _, err := run("stop", name); err != nil {
			return fmt.Errorf("stop %d: %w", i, err)
		}
		w, err := toSSH("--from", snap)
		if err != nil {
			return fmt.Errorf("start --from %s: %w", snap, err)
		}
		if m, err := marker(); err != nil || m != want {
			return fmt.Errorf("start --from %s did not restore the memory: %s holds %q, want %q (%v)", snap, debianMarker, m, want, err)
		}
		sd, err := timed("suspend", name)
		if err != nil {
			return fmt.Errorf("suspend %d: %w", i, err)
		}
		rs, err := toSSH()
		if err != nil {
			return fmt.Errorf("resume %d: %w", i, err)
		}
		if m, err := marker(); err != nil || m != want {
			return fmt.Errorf("resume %d did not keep the memory: %s holds %q, want %q (%v)", i, debianMarker, m, want, err)
		}
		if _, err := run("stop", name); err != nil {
			return fmt.Errorf("stop %d: %w", i, err)
		}
		cold, from, resume, susp = append(cold, ms(c)), append(from, ms(w)), append(resume, ms(rs)), append(susp, ms(sd))
		fromRatios, resumeRatios = append(fromRatios, ms(w)/ms(c)), append(resumeRatios, ms(rs)/ms(c))
		e.log.Info("warmdebian pair", "run", i, "cold_ms", ms(c), "from_ms", ms(w), "resume_ms", ms(rs),
			"snapshot_ms", ms(st), "suspend_ms", ms(sd))
	}
	r.set("warmdebian.cold", cold)
	r.set("warmdebian.from", from)
	r.set("warmdebian.resume", resume)
	r.set("warmdebian.suspend", susp)
	r.set("warmdebian.ssh", sshT)
	r.set("warmdebian.snapshot_time", snapTime)
	r.set("warmdebian.snapshot_size", snapSize)
	r.setRatio("warmdebian.ratio", median(from)/median(cold), fromRatios)
	r.setRatio("warmdebian.resume_ratio", median(resume)/median(cold), resumeRatios)
	return nil
}

// sshReady runs `mb ssh NAME -- true` until it exits 0. mb ssh itself
// waits for SSH to accept the VM's key; the loop only covers a failure
// after that (a refused login while the guest is still coming up).
func sshReady(ctx context.Context, log *slog.Logger, mb *rig.MB, name string) error {
	cctx, cancel := context.WithTimeout(ctx, debianTimeout)
	defer cancel()
	for {
		cmd := mb.Command(cctx, "ssh", name, "--timeout", debianTimeout.String(), "--", "true")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if err == nil {
			// mb ssh says so when its first handshake failed and it waited.
			if strings.Contains(stderr.String(), "waiting") {
				log.Info("warmdebian: mb ssh waited for SSH", "vm", name)
			}
			return nil
		}
		err = fmt.Errorf("mb ssh: %w: %s", err, strings.TrimSpace(stderr.String()))
		select {
		case <-cctx.Done():
			return fmt.Errorf("SSH to %s: %w", name, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
