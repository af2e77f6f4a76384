package procfs

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	st, err := ParseStat("42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 10\n")
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 42 || st.Comm != "a b) c)" || st.State != 'S' || st.PPID != 1 || st.UTime != 7 || st.STime != 3 {
		t.Errorf("ParseStat = %+v", st)
	}
	for _, bad := range []string{"", "42 x S", "42 (x) S 1"} {
		if _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q) succeeded", bad)
		}
	}
}

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	rss, err := RSS(pid)
	if err != nil || rss == 0 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
	pss, err := PSS(pid)
	if err != nil || pss == 0 || pss > rss+(64<<20) { // read apart in time: allow growth
		t.Errorf("PSS = %d (RSS %d), %v", pss, rss, err)
	}
	n, err := FDCount(pid)
	if err != nil || n < 3 {
		t.Errorf("FDCount = %d, %v", n, err)
	}
	if !Alive(pid) || Alive(1<<30) {
		t.Error("Alive is wrong about this process or a missing one")
	}
	maps, err := Mappings(pid)
	if err != nil || len(maps) == 0 {
		t.Fatalf("Mappings = %d, %v", len(maps), err)
	}
	var sum uint64
	for _, m := range maps {
		if m.End <= m.Start {
			t.Errorf("mapping %+v", m)
		}
		sum += m.RSS
	}
	if sum == 0 {
		t.Error("no resident mapping")
	}
	if st, err := ReadStat(pid); err != nil || st.PID != pid {
		t.Errorf("ReadStat = %+v, %v", st, err)
	}
}
