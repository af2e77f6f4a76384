package main

import (
	"strings"
	"testing"
)

// The guest-side idle sampler's output reads into one sample per
// reading: the agent processes' ticks, their PSS summed, the agent
// process's own resident set; a cut-off or short output is an error.
func TestParseIdleSamples(t *testing.T) {
	stat := func(pid, ppid, comm string, ticks string) string {
		return pid + " (" + comm + ") S " + ppid + " 1 1 0 -1 4194560 100 0 0 0 " + ticks + " 2 0 0 20 0 7 0 10 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	}
	reading := func(i, up, t1, t96, rss96 string) string {
		return "=== " + i + "\n" + up + " 10.00\n" + stat("1", "0", "init", t1) + stat("96", "1", "exe", t96) +
			"mem 1 7000 4000 \nmem 96 " + rss96 + " 5000 \n"
	}
	out := reading("0", "100.00", "10", "20", "8000") + reading("1", "130.00", "11", "25", "9000") + "done\n"
	s, err := parseIdleSamples(out, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(s[1].procs.procs) != 2 || s[1].pss != 9000*1024 || s[1].ownRSS != 9000*1024 || s[0].ownRSS != 8000*1024 {
		t.Fatalf("samples %+v", s)
	}
	if ticks, err := agentTicks(s[0].procs, s[1].procs); err != nil || ticks != 6 {
		t.Errorf("ticks between the readings = %d, %v; want 6", ticks, err)
	}
	if s[1].procs.uptime-s[0].procs.uptime != 30 {
		t.Errorf("uptimes %v, %v", s[0].procs.uptime, s[1].procs.uptime)
	}
	for _, bad := range []string{strings.TrimSuffix(out, "done\n"), reading("0", "100.00", "10", "20", "8000") + "done\n",
		strings.Replace(out, "mem 96 9000", "mem 96 x", 1)} {
		if _, err := parseIdleSamples(bad, 2); err == nil {
			t.Errorf("parseIdleSamples accepted %q", bad)
		}
	}
}
