package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/internal/hbcwire"
)

// fleetAgentPart boots one mini VM whose kernel command line starts
// mb-agent's two reporters (mb.heartbeat=, mb.register=) against receivers
// in this process, reached from the guest as 10.0.2.2, at their default
// intervals (heartbeats every 10 s with the default plugins, registrations
// every 30 s), and measures what each reporter costs inside the guest.
func fleetAgentPart() part {
	return part{name: "fleetagent", rows: []rowDef{
		{id: "fleetagent.heartbeat.rss", name: "fleet: `mb-agent heartbeat` memory in the mini guest (resident set, VmRSS; 10 s interval, default plugins)", unit: "MiB", target: &target{"<", 10}},
		{id: "fleetagent.heartbeat.cpu", name: "fleet: `mb-agent heartbeat` CPU in the mini guest", unit: "% of a CPU", target: &target{"<", 1}},
		{id: "fleetagent.register.rss", name: "fleet: `mb-agent register` memory in the mini guest (resident set, VmRSS; 30 s interval)", unit: "MiB", target: &target{"<", 10}},
		{id: "fleetagent.register.cpu", name: "fleet: `mb-agent register` CPU in the mini guest", unit: "% of a CPU", target: &target{"<", 1}},
	}, run: runFleetAgent}
}

func runFleetAgent(ctx context.Context, e *env, r *results) error {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer udp.Close()
	beats := make(chan struct{}, 1)
	go ackHeartbeats(udp, beats)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	regs := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case regs <- struct{}{}:
		default:
		}
		_, _ = w.Write([]byte(`{"status":"registered","timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`))
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(tl)
	defer srv.Close()

	s, err := e.openSession(ctx, "mbbf", true)
	if err != nil {
		return err
	}
	defer s.close(e)
	mb := s.mb
	const vm = "fleet"
	specPath, err := mb.WriteSpec(vm, "name: fleet\nimage: mini\nmemory: 256M\nrestart: \"no\"\n")
	if err != nil {
		return err
	}
	cmdline := fmt.Sprintf("mb.heartbeat=10.0.2.2:%d mb.register=http://10.0.2.2:%d",
		udp.LocalAddr().(*net.UDPAddr).Port, tl.Addr().(*net.TCPAddr).Port)
	sctx, cancel := context.WithTimeout(ctx, bootTimeout)
	_, err = mb.Run(sctx, "start", vm, "-f", specPath, "--cmdline", cmdline)
	cancel()
	if err != nil {
		return err
	}
	// Both reporters have reached the host before the window starts.
	for what, ch := range map[string]chan struct{}{"heartbeat": beats, "registration": regs} {
		select {
		case <-ch:
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("no %s from the guest within 2 minutes", what)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// CPU and memory are sampled over consecutive windows, one per run,
	// each long enough for several heartbeats and a plugin round
	// (30 s in a full run).
	window := e.cfg.idle / 2
	runs := max(e.cfg.runs, 1)
	prev, err := reporterProcs(ctx, mb, vm)
	if err != nil {
		return err
	}
	e.log.Info("fleetagent: reporters running, guest idling", "windows", runs, "seconds_each", window.Seconds())
	cpu := map[string][]float64{}
	rss := map[string][]float64{}
	pss := map[string][]float64{}
	gone := map[string]bool{}
	var total float64
	for range runs {
		select {
		case <-time.After(window):
		case <-ctx.Done():
			return ctx.Err()
		}
		cur, err := reporterProcs(ctx, mb, vm)
		if err != nil {
			return err
		}
		wall := cur.uptime - prev.uptime
		if wall <= 0 {
			return fmt.Errorf("guest uptime did not advance")
		}
		total += wall
		for _, sub := range []string{"heartbeat", "register"} {
			a, ok1 := prev.procs[sub]
			b, ok2 := cur.procs[sub]
			if !ok1 || !ok2 || a.stat.PID != b.stat.PID {
				gone[sub] = true
				continue
			}
			ticks := (b.stat.UTime + b.stat.STime) - (a.stat.UTime + a.stat.STime)
			cpu[sub] = append(cpu[sub], float64(ticks)/userHZ/wall*100)
			rss[sub] = append(rss[sub], mib(b.rssKB*1024))
			pss[sub] = append(pss[sub], mib(b.pssKB*1024))
		}
		prev = cur
	}
	for _, sub := range []string{"heartbeat", "register"} {
		if gone[sub] {
			r.notMeasured("fleetagent."+sub+".cpu", "the reporter was not running through every window")
			r.notMeasured("fleetagent."+sub+".rss", "the reporter was not running through every window")
			continue
		}
		r.set("fleetagent."+sub+".cpu", cpu[sub])
		r.note("fleetagent."+sub+".cpu", "%d windows of %.0f s on the guest clock (100 clock ticks a second)", runs, total/float64(runs))
		r.set("fleetagent."+sub+".rss", rss[sub])
		r.note("fleetagent."+sub+".rss", "proportional set size %.1f MiB at the end (the binary's pages shared with init and the agent counted once)", pss[sub][len(pss[sub])-1])
	}
	return nil
}

// ackHeartbeats answers every HTB on conn with an ACK and signals beats.
func ackHeartbeats(conn *net.UDPConn, beats chan<- struct{}) {
	buf := make([]byte, hbcwire.MaxDatagram+1)
	var dec hbcwire.Decoder
	var enc hbcwire.Encoder
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := dec.Decode(buf[:n])
		if err != nil || m.ID != hbcwire.HTB {
			continue
		}
		select {
		case beats <- struct{}{}:
		default:
		}
		ack := hbcwire.New(hbcwire.ACK)
		for _, k := range []string{"timestamp", "seq"} {
			if v, ok := m.Get(k); ok {
				ack.Fields = append(ack.Fields, hbcwire.Field{Key: k, Value: v})
			}
		}
		if b, err := enc.Encode(ack, hbcwire.EncodeOptions{}); err == nil {
			_, _ = conn.WriteToUDP(b, from)
		}
	}
}

// reporterProc is one reporter's /proc figures.
type reporterProc struct {
	stat         procfs.Stat
	rssKB, pssKB uint64
}

type reporterSnap struct {
	uptime float64
	procs  map[string]reporterProc // by subcommand
}

// reporterProcs reads the guest's uptime and, for every process whose
// command line is "mb-agent heartbeat ..." or "mb-agent register ...",
// its stat line, VmRSS and Pss, in one exec.
func reporterProcs(ctx context.Context, mb *rig.MB, vm string) (reporterSnap, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := mb.Run(cctx, "exec", vm, "--", "sh", "-c", `cat /proc/uptime
for d in /proc/[0-9]*; do
  c=$(tr '\0' ' ' < $d/cmdline 2>/dev/null)
  case "$c" in "mb-agent heartbeat "*|"mb-agent register "*) ;; *) continue ;; esac
  set -- $c
  echo "proc $2 $(cat $d/stat)"
  echo "mem $2 $(grep VmRSS $d/status | tr -s ' ' | cut -d' ' -f2) $(grep '^Pss:' $d/smaps_rollup | tr -s ' ' | cut -d' ' -f2)"
done`)
	if err != nil {
		return reporterSnap{}, err
	}
	snap := reporterSnap{procs: map[string]reporterProc{}}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if f := strings.Fields(lines[0]); len(f) > 0 {
		snap.uptime, _ = strconv.ParseFloat(f[0], 64)
	}
	for _, l := range lines[1:] {
		kind, rest, _ := strings.Cut(l, " ")
		sub, rest, _ := strings.Cut(rest, " ")
		p := snap.procs[sub]
		switch kind {
		case "proc":
			st, err := procfs.ParseStat(rest)
			if err != nil {
				return snap, err
			}
			p.stat = st
		case "mem":
			f := strings.Fields(rest)
			if len(f) == 2 {
				p.rssKB, _ = strconv.ParseUint(f[0], 10, 64)
				p.pssKB, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		snap.procs[sub] = p
	}
	if snap.uptime == 0 || len(snap.procs) == 0 {
		return snap, fmt.Errorf("no reporter process in the guest:\n%s", out)
	}
	return snap, nil
}
