package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
)

// userHZ is the kernel's clock tick for /proc/<pid>/stat CPU times; it is
// 100 on every Linux architecture mb runs guests of.
const userHZ = 100

// agentPart boots one mini VM named demo, with mb-agent's command socket
// (on by default) and its socktop server on (mb.socktop=:3000, forwarded
// to the host), and measures `mb exec` and the guest agent's own cost
// inside the guest: idle, then with a socktop client polling metrics.
func agentPart() part {
	return part{name: "agent", rows: []rowDef{
		{id: "agent.exec", name: "agent: `mb exec demo -- true` round trip", unit: "ms"},
		{id: "agent.rss", name: "agent: mb-agent memory in the guest, proportional set size (PSS) of init + agent processes, so the binary's pages they share count once", unit: "MiB", target: &target{"<", 10}},
		{id: "agent.rss.own", name: "agent: resident set (Rss) of the mb-agent agent process alone, the issue's measure (init, PID 1, is the same binary in its init role)", unit: "MiB", target: &target{"<", 10}},
		{id: "agent.cpu", name: "agent: mb-agent CPU while the guest idles (init + agent processes)", unit: "% of a CPU", target: &target{"<", 1}},
		{id: "agent.cpu.poll", name: "agent: mb-agent CPU with a socktop client asking get_metrics every 500 ms (init + agent processes)", unit: "% of a CPU"},
		{id: "agent.rss.poll", name: "agent: mb-agent memory (PSS, init + agent) after that polling", unit: "MiB"},
	}, run: runAgent}
}

func runAgent(ctx context.Context, e *env, r *results) error {
	s, err := e.openSession(ctx, "mbba", true)
	if err != nil {
		return err
	}
	defer s.close(e)
	mb := s.mb
	specPath, err := mb.WriteSpec("demo", "name: demo\nimage: mini\nmemory: 256M\nrestart: \"no\"\n")
	if err != nil {
		return err
	}
	port, err := freeTCPPort()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, bootTimeout)
	_, err = mb.Run(sctx, "start", "demo", "-f", specPath, "--cmdline", "mb.socktop=:3000", "--forward", fmt.Sprintf("%d:3000", port))
	cancel()
	if err != nil {
		return err
	}

	var rtt []float64
	for range e.cfg.execRuns {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		t := time.Now()
		_, err := mb.Run(cctx, "exec", "demo", "--", "true")
		took := time.Since(t)
		cancel()
		if err != nil {
			return err
		}
		rtt = append(rtt, ms(took))
	}
	r.set("agent.exec", rtt)

	before, err := guestAgentProcs(ctx, mb)
	if err != nil {
		return err
	}

	// Five idle windows (one in quick mode), measured from inside the
	// guest by a shell loop, so that no exec through the agent (the
	// measurement's own traffic) falls in them: only vmhost's liveness
	// pings reach the agent, as on any idle VM.
	windows, window := 5, e.cfg.idle/2
	if e.cfg.quick {
		windows, window = 1, e.cfg.idle
	}
	samples, err := sampleIdleAgent(ctx, mb, before, windows, window)
	if err != nil {
		return err
	}
	var pssS, ownS, cpuS []float64
	var ticksAll uint64
	var wallAll float64
	for w := 1; w < len(samples); w++ {
		ticks, err := agentTicks(samples[w-1].procs, samples[w].procs)
		if err != nil {
			return err
		}
		wall := samples[w].procs.uptime - samples[w-1].procs.uptime
		if wall <= 0 {
			return fmt.Errorf("guest uptime did not advance (%.2f → %.2f)", samples[w-1].procs.uptime, samples[w].procs.uptime)
		}
		cpuS = append(cpuS, float64(ticks)/userHZ/wall*100)
		ticksAll, wallAll = ticksAll+ticks, wallAll+wall
		pssS, ownS = append(pssS, mib(samples[w].pss)), append(ownS, mib(samples[w].ownRSS))
	}
	r.set("agent.rss", pssS)
	r.set("agent.rss.own", ownS)
	r.note("agent.rss", "%d processes, command socket and socktop on; read in the guest at the end of each idle window", len(before.procs))
	r.set("agent.cpu", cpuS)
	r.note("agent.cpu", "%d idle windows of %.0f s on the guest clock, read by a shell loop in the guest (no exec through the agent in them), vmhost's agent pings included; %d ticks in all",
		windows, wallAll/float64(windows), ticksAll)
	// The reads after this point run through the agent and cost it CPU:
	// two back-to-back reads measure that cost, taken off the polled
	// window below (which starts and ends with a read). The smallest of
	// three is taken, so the correction never exceeds what a read costs.
	next, err := guestAgentProcs(ctx, mb)
	if err != nil {
		return err
	}
	var readCost uint64
	for i := range 3 {
		snap, err := guestAgentProcs(ctx, mb)
		if err != nil {
			return err
		}
		c, err := agentTicks(next, snap)
		if err != nil {
			return err
		}
		if i == 0 || c < readCost {
			readCost = c
		}
		next = snap
	}

	// The same window with a socktop client polling metrics.
	pctx, stopPoll := context.WithCancel(ctx)
	polled := make(chan int, 1)
	go func() { polled <- pollSocktop(pctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", port), 500*time.Millisecond) }()
	first, err := guestAgentProcs(ctx, mb)
	if err == nil {
		select {
		case <-time.After(e.cfg.idle):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	var last guestProcs
	if err == nil {
		last, err = guestAgentProcs(ctx, mb)
	}
	stopPoll()
	replies := <-polled
	if err != nil {
		return err
	}
	ticks, err := agentTicks(first, last)
	if err != nil {
		return err
	}
	wall := last.uptime - first.uptime
	if wall <= 0 || replies == 0 {
		return fmt.Errorf("socktop polling: %d replies in %.1f s of guest time", replies, wall)
	}
	r.set("agent.cpu.poll", []float64{max(float64(ticks)-float64(readCost), 0) / userHZ / wall * 100})
	r.note("agent.cpu.poll", "%.0f s window, %d get_metrics replies, minus %d ticks for one read through mb exec", wall, replies, readCost)
	m, err := agentMemory(ctx, mb, last)
	if err != nil {
		return err
	}
	r.set("agent.rss.poll", []float64{mib(m.pss)})
	return nil
}

// agentMem is the memory of the guest's mb-agent processes, in bytes: the
// PSS of all of them (init and the agent are one binary: summing their RSS
// would count its shared pages twice, PSS counts each page once) and the
// resident set of the agent process (the one that is not PID 1).
type agentMem struct{ pss, ownRSS uint64 }

// add counts one process's resident set and PSS.
func (m *agentMem) add(pid int, rss, pss uint64) {
	m.pss += pss
	if pid != 1 {
		m.ownRSS = max(m.ownRSS, rss)
	}
}

// idleSample is one reading of the guest's mb-agent processes taken in
// the guest: their CPU ticks and their memory.
type idleSample struct {
	procs guestProcs
	agentMem
}

// idleSampler is the guest-side loop: after a first reading, one reading
// every $2 seconds, $1 times, of /proc/uptime, the stat line and the
// smaps_rollup Rss and Pss of each PID after $2, into $3; "done" ends it.
const idleSampler = `n=$1 w=$2 out=$3; shift 3
i=0
while :; do
	echo "=== $i"
	cat /proc/uptime
	for p in "$@"; do cat /proc/$p/stat; done
	for p in "$@"; do echo "mem $p $(grep -E '^(Rss|Pss):' /proc/$p/smaps_rollup | tr -s ' ' | cut -d' ' -f2 | tr '\n' ' ')"; done
	[ $i -ge $n ] && break
	i=$((i+1))
	sleep $w
done > $out.tmp
echo done >> $out.tmp
mv $out.tmp $out
`

// sampleIdleAgent runs idleSampler in the guest, detached from the exec
// that starts it, waits for it and returns its windows+1 readings.
func sampleIdleAgent(ctx context.Context, mb *rig.MB, g guestProcs, windows int, window time.Duration) ([]idleSample, error) {
	const out = "/tmp/mb-bench-idle.log"
	args := []string{"exec", "demo", "--", "sh", "-c", `cat > /tmp/mb-bench-idle.sh || exit 1; sh /tmp/mb-bench-idle.sh "$@" </dev/null >/dev/null 2>&1 &`, "sh",
		strconv.Itoa(windows), strconv.Itoa(int(window.Seconds())), out}
	for _, p := range g.procs {
		args = append(args, strconv.Itoa(p.PID))
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	cmd := mb.Command(cctx, args...)
	cmd.Stdin = strings.NewReader(idleSampler)
	b, err := cmd.CombinedOutput()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("start the idle sampler in the guest: %w: %s", err, b)
	}
	select {
	case <-time.After(time.Duration(windows)*window + 2*time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var text string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		text, err = mb.Run(cctx, "exec", "demo", "--", "sh", "-c", "cat "+out+" 2>/dev/null || true")
		cancel()
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(strings.TrimSpace(text), "done") || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return parseIdleSamples(text, windows+1)
}

// parseIdleSamples reads idleSampler's output: want readings, each a
// "=== i" line, /proc/uptime, stat lines and "mem PID RSS PSS" lines (kB).
func parseIdleSamples(text string, want int) ([]idleSample, error) {
	text = strings.TrimSpace(text)
	if !strings.HasSuffix(text, "done") {
		return nil, fmt.Errorf("the guest's idle sampler did not finish: %q", text)
	}
	var out []idleSample
	for _, block := range strings.Split(strings.TrimSuffix(text, "done"), "=== ")[1:] {
		var stat strings.Builder
		var s idleSample
		_, rest, _ := strings.Cut(block, "\n")
		for l := range strings.SplitSeq(rest, "\n") {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			if f[0] != "mem" {
				stat.WriteString(l + "\n")
				continue
			}
			if len(f) != 4 {
				return nil, fmt.Errorf("bad memory line from the guest: %q", l)
			}
			pid, err0 := strconv.Atoi(f[1])
			rss, err1 := strconv.ParseUint(f[2], 10, 64)
			pss, err2 := strconv.ParseUint(f[3], 10, 64)
			if err0 != nil || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("bad memory line from the guest: %q", l)
			}
			s.add(pid, rss*1024, pss*1024)
		}
		var err error
		if s.procs, err = parseAgentProcs(stat.String()); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) != want {
		return nil, fmt.Errorf("the guest's idle sampler gave %d readings, want %d", len(out), want)
	}
	return out, nil
}

// agentMemory reads the memory of the mb-agent processes of g through
// mb exec.
func agentMemory(ctx context.Context, mb *rig.MB, g guestProcs) (agentMem, error) {
	var m agentMem
	for _, p := range g.procs {
		out, err := mb.Run(ctx, "exec", "demo", "--", "cat", fmt.Sprintf("/proc/%d/smaps_rollup", p.PID))
		if err != nil {
			return m, err
		}
		pss, err := statusKB(out, "Pss:")
		if err != nil {
			return m, fmt.Errorf("mb-agent (guest PID %d): %w", p.PID, err)
		}
		rss, err := statusKB(out, "Rss:")
		if err != nil {
			return m, fmt.Errorf("mb-agent (guest PID %d): %w", p.PID, err)
		}
		m.add(p.PID, rss, pss)
	}
	return m, nil
}

// pollSocktop asks the socktop server at url for metrics every interval
// until ctx ends, and returns how many replies came.
func pollSocktop(ctx context.Context, url string, every time.Duration) int {
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return 0
	}
	defer c.CloseNow()
	n := 0
	for ctx.Err() == nil {
		if c.Write(ctx, websocket.MessageText, []byte("get_metrics")) != nil {
			break
		}
		if _, _, err := c.Read(ctx); err != nil {
			break
		}
		n++
		select {
		case <-time.After(every):
		case <-ctx.Done():
		}
	}
	return n
}

// freeTCPPort returns a port on 127.0.0.1 that was free a moment ago.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// agentTicks is the CPU time (clock ticks) the mb-agent
// processes used between two snapshots.
func agentTicks(a, b guestProcs) (uint64, error) {
	var ticks uint64
	for _, p := range a.procs {
		q, ok := b.byPID(p.PID)
		if !ok {
			return 0, fmt.Errorf("mb-agent process %d disappeared while the guest idled", p.PID)
		}
		ticks += (q.UTime + q.STime) - (p.UTime + p.STime)
	}
	return ticks, nil
}

// guestProcs is a snapshot of the guest's mb-agent processes.
type guestProcs struct {
	uptime float64 // guest seconds since boot
	procs  []procfs.Stat
}

func (g guestProcs) byPID(pid int) (procfs.Stat, bool) {
	for _, p := range g.procs {
		if p.PID == pid {
			return p, true
		}
	}
	return procfs.Stat{}, false
}

// guestAgentProcs reads /proc/uptime and every /proc/<pid>/stat in the
// guest in one exec and keeps the mb-agent processes: PID 1 and its
// re-executed agent child in the mini image, or processes named mb-agent.
func guestAgentProcs(ctx context.Context, mb *rig.MB) (guestProcs, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := mb.Run(cctx, "exec", "demo", "--", "sh", "-c", "cat /proc/uptime; cat /proc/[0-9]*/stat 2>/dev/null")
	if err != nil {
		return guestProcs{}, err
	}
	return parseAgentProcs(out)
}

// parseAgentProcs reads the guest's /proc/uptime followed by /proc/PID/stat
// lines, and keeps the mb-agent processes among them.
func parseAgentProcs(out string) (guestProcs, error) {
	var err error
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var g guestProcs
	if len(lines) == 0 {
		return g, fmt.Errorf("no output from the guest")
	}
	f := strings.Fields(lines[0])
	if len(f) == 0 {
		return g, fmt.Errorf("bad /proc/uptime in the guest: %q", lines[0])
	}
	if g.uptime, err = strconv.ParseFloat(f[0], 64); err != nil {
		return g, fmt.Errorf("bad /proc/uptime in the guest: %q", lines[0])
	}
	// In the mini image mb-agent is PID 1 (the init role, named after its
	// file, /init) and re-executes itself as PID 1's child for the agent
	// role (through /proc/self/exe, so the kernel names it "exe");
	// elsewhere it is a service named mb-agent.
	var all []procfs.Stat
	initComm := ""
	for _, l := range lines[1:] {
		st, err := procfs.ParseStat(l)
		if err != nil {
			continue
		}
		all = append(all, st)
		if st.PID == 1 {
			initComm = st.Comm
		}
	}
	for _, st := range all {
		isInit := st.PID == 1 && st.Comm != "systemd"
		// Re-executed through /proc/self/exe, the child is named "exe".
		isChild := st.PPID == 1 && (st.Comm == initComm || st.Comm == "exe")
		if isInit || isChild || st.Comm == "mb-agent" {
			g.procs = append(g.procs, st)
		}
	}
	if len(g.procs) == 0 {
		return g, fmt.Errorf("no mb-agent process in the guest's /proc")
	}
	return g, nil
}

// statusKB reads "Key: N kB" from a /proc/<pid>/status text, in bytes.
func statusKB(text, key string) (uint64, error) {
	for l := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad %s %q", key, rest)
			}
			return v * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s line in the /proc file", key)
}
