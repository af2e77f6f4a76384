package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/threshold"
)

var _ monitor.Journal = (*Writer)(nil)

func TestEntryShape(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: filepath.Join(dir, "j")})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 28, 12, 34, 56, 123e6, time.UTC)
	if err := w.Record(at, "192.168.1.100:50003", map[string]any{"ID": "HTB", "name": "webserver01", "interval": 10}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(at, "", map[string]any{"ID": "ALERT", "text": "a <b> & c"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(at, "", map[string]any{"ID": "PLG", "data": map[string]any{"x": math.NaN()}}); err != nil {
		t.Errorf("a NaN in a message: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "j", "messages.journal"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := `{"timestamp":1774701296.123,"datetime":"2026-03-28T12:34:56","source_ip":"192.168.1.100","source_port":50003,"message":{"ID":"HTB","interval":10,"name":"webserver01"}}`
	if lines[0] != want {
		t.Errorf("line\n got %s\nwant %s", lines[0], want)
	}
	if len(lines) != 3 || !strings.Contains(lines[2], `"unencodable":"map[ID:PLG data:map[x:NaN]]"`) {
		t.Errorf("NaN line: %q", lines[len(lines)-1])
	}
	if !strings.Contains(lines[1], `"source_ip":"","source_port":0`) || !strings.Contains(lines[1], `a <b> & c`) {
		t.Errorf("local line %s", lines[1])
	}
	for _, p := range []string{filepath.Join(dir, "j"), filepath.Join(dir, "j", "messages.journal")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	if err := w.Record(at, "", "x"); err == nil {
		t.Error("write after close succeeded")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, File: "m.journal", MaxSize: 1000, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := w.Record(at, "10.0.0.1:1", map[string]any{"g": g, "i": i, "pad": strings.Repeat("x", 50)}); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "m.journal*"))
	if len(names) != 3 {
		t.Fatalf("files %v, want the journal and 2 backups", names)
	}
	for _, n := range names {
		fi, _ := os.Stat(n)
		if fi.Size() > 1000 {
			t.Errorf("%s is %d bytes, over max size", n, fi.Size())
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", n, fi.Mode().Perm())
		}
		f, _ := os.Open(n)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("%s: bad line %q", n, sc.Text())
			}
		}
		f.Close()
	}
	// The newest entries are in the current file, the older in .1.
	cur, _ := TailFile(filepath.Join(dir, "m.journal"), 1)
	old, _ := TailFile(filepath.Join(dir, "m.journal.1"), 1)
	if len(cur) != 1 || len(old) != 1 {
		t.Fatalf("tails %v %v", cur, old)
	}
}

func TestNoBackupsAndTail(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, MaxSize: 300, MaxBackups: 0})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := w.Record(time.Unix(int64(i), 0), "", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 {
		t.Errorf("files %v, want only the journal", names)
	}
	es, err := w.Tail(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[1].Message.(map[string]any)["i"].(float64) != 19 || es[0].Message.(map[string]any)["i"].(float64) != 18 {
		t.Errorf("tail %+v", es)
	}
	w.Close()
}

func TestRefusesSymlinkAndFixesMode(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	jd := filepath.Join(dir, "j")
	os.Mkdir(jd, 0o700)
	if err := os.Symlink(target, filepath.Join(jd, "messages.journal")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: jd}); err == nil {
		t.Error("opened a journal through a symlink")
	}
	jd2 := filepath.Join(dir, "k")
	os.Mkdir(jd2, 0o700)
	if err := os.WriteFile(filepath.Join(jd2, "messages.journal"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Open(Options{Dir: jd2})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if fi, _ := os.Stat(filepath.Join(jd2, "messages.journal")); fi.Mode().Perm() != 0o600 {
		t.Errorf("existing journal left at %v", fi.Mode().Perm())
	}
}

// TestEngineJournal: the engine journals observations, alert transitions
// and notifications.
func TestEngineJournal(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	crit := 90.0
	e, err := monitor.New(monitor.Options{Journal: w, Settings: monitor.Settings{
		Thresholds: threshold.Spec{"cpu_monitor": {"cpu_percent": {Critical: &crit}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Observe(ctx, monitor.Observation{Host: "web", Source: "hbc", Address: "192.0.2.7:50003", Plugin: "cpu_monitor",
		Fields: map[string]any{"cpu_percent": 95.0}}); err != nil {
		t.Fatal(err)
	}
	es, err := w.Tail(10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, en := range es {
		ids = append(ids, en.Message.(map[string]any)["ID"].(string))
	}
	if strings.Join(ids, ",") != "PLG,REACH,ALERT,NOTIFY" || es[0].SourceIP != "192.0.2.7" || es[0].SourcePort != 50003 {
		t.Errorf("journal ids %v, first %+v", ids, es[0])
	}
	w.Close()
}

// TestWriteLater: held entries reach the file with the next Write (in
// order), Flush, Tail or Close, and rotation cuts between the same entries
// as without holding.
func TestWriteLater(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, File: "m.journal", MaxSize: 400, MaxBackups: 3})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	lines := func(name string) []string {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		var ids []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e struct{ Message map[string]any }
			if l != "" && json.Unmarshal([]byte(l), &e) == nil {
				ids = append(ids, e.Message["n"].(string))
			}
		}
		return ids
	}
	msg := func(n string) map[string]any { return map[string]any{"ID": "PLG", "n": n} }
	if err := w.WriteLater(NewEntry(at, "", msg("1"))); err != nil {
		t.Fatal(err)
	}
	if got := lines("m.journal"); len(got) != 0 {
		t.Errorf("held entry written at once: %v", got)
	}
	if err := w.Write(NewEntry(at, "", msg("2"))); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines("m.journal"), ","); got != "1,2" {
		t.Errorf("after a Write: %s", got)
	}
	w.WriteLater(NewEntry(at, "", msg("3")))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines("m.journal"), ","); got != "1,2,3" {
		t.Errorf("after Flush: %s", got)
	}
	// Entries of about 100 bytes: the 400-byte file rotates after 3.
	for _, n := range []string{"4", "5", "6"} {
		w.WriteLater(NewEntry(at, "", msg(n)))
	}
	if tail, err := w.Tail(10); err != nil || len(tail) != 3 {
		t.Errorf("Tail sees %d entries (%v), want the 3 since the rotation", len(tail), err)
	}
	w.WriteLater(NewEntry(at, "", msg("7")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The same entries written at once rotate at the same places.
	ref := t.TempDir()
	rw, err := Open(Options{Dir: ref, File: "m.journal", MaxSize: 400, MaxBackups: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1", "2", "3", "4", "5", "6", "7"} {
		rw.Write(NewEntry(at, "", msg(n)))
	}
	rw.Close()
	for _, name := range []string{"m.journal", "m.journal.1", "m.journal.2"} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(ref, name))
		if string(a) != string(b) {
			t.Errorf("%s differs from writing at once:\n%s\nwant\n%s", name, a, b)
		}
	}
	if got := lines("m.journal.1"); len(got) == 0 {
		t.Error("no rotation happened")
	}
}
