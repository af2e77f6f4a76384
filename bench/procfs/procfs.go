// Package procfs reads what the benchmark and the failure suite need to know
// about host processes from Linux's /proc: resident and proportional memory,
// open file descriptors, CPU time, command lines, and which processes run a
// given program.
package procfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Root is where proc is mounted.
const Root = "/proc"

// RSS returns a process's resident set size in bytes (VmRSS).
func RSS(pid int) (uint64, error) {
	return statusField(pid, "VmRSS:")
}

// PSS returns a process's proportional set size in bytes from smaps_rollup:
// pages shared with other processes (the binary's text, shared libraries)
// count divided by the number of sharers, so PSS values add up to what the
// processes really cost together.
func PSS(pid int) (uint64, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "smaps_rollup")
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	return kbField(data, "Pss:", p)
}

// FDCount returns how many file descriptors a process has open.
func FDCount(pid int) (int, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(p)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", p, err)
	}
	return len(ents), nil
}

// Cmdline returns a process's argument vector.
func Cmdline(pid int) ([]string, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "cmdline")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	data = bytes.TrimSuffix(data, []byte{0})
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty (a kernel thread or a zombie)", p)
	}
	return strings.Split(string(data), "\x00"), nil
}

// Stat is the part of /proc/<pid>/stat the callers use.
type Stat struct {
	PID   int
	Comm  string
	State byte // R, S, D, Z, ...
	PPID  int
	// UTime and STime are CPU time in clock ticks (USER_HZ, 100 on Linux).
	UTime, STime uint64
}

// ParseStat parses the text of a /proc/<pid>/stat file. The command name is
// in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func ParseStat(text string) (Stat, error) {
	open := strings.IndexByte(text, '(')
	end := strings.LastIndexByte(text, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("bad stat line %q", text)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(text[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("bad pid in stat line %q: %w", text, err)
	}
	f := strings.Fields(text[end+1:])
	// After the comm: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("short stat line %q", text)
	}
	st := Stat{PID: pid, Comm: text[open+1 : end], State: f[0][0]}
	if st.PPID, err = strconv.Atoi(f[1]); err != nil {
		return Stat{}, fmt.Errorf("bad ppid in stat line: %w", err)
	}
	if st.UTime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("bad utime in stat line: %w", err)
	}
	if st.STime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("bad stime in stat line: %w", err)
	}
	return st, nil
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "stat")
	data, err := os.ReadFile(p)
	if err != nil {
		return Stat{}, fmt.Errorf("read %s: %w", p, err)
	}
	return ParseStat(string(data))
}

// Alive reports whether pid exists and is not a zombie: a zombie has
// exited and only waits for its parent to reap it.
func Alive(pid int) bool {
	st, err := ReadStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// WaitGone polls until pid is gone (or a zombie) or ctx ends, and returns
// when it noticed; the polling interval bounds the error.
func WaitGone(ctx context.Context, pid int, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for Alive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("process %d still running: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Find returns the PIDs of live processes whose executable's base name
// (argv[0]'s base name) is one of names. Zombies are left out.
func Find(names ...string) ([]int, error) {
	ents, err := os.ReadDir(Root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Root, err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		argv, err := Cmdline(pid)
		if err != nil || !want[filepath.Base(argv[0])] || !Alive(pid) {
			continue
		}
		out = append(out, pid)
	}
	return out, nil
}

// FindWithArg is Find restricted to processes one of whose arguments
// contains substr (for example a temporary $MB_HOME), so a test counts only
// its own processes on a machine where others run VMs too.
func FindWithArg(substr string, names ...string) ([]int, error) {
	pids, err := Find(names...)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range pids {
		argv, err := Cmdline(pid)
		if err != nil {
			continue
		}
		for _, a := range argv[1:] {
			if strings.Contains(a, substr) {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

// Environ returns the value of one environment variable of a process, and
// whether it was set.
func Environ(pid int, name string) (string, bool, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "environ")
	data, err := os.ReadFile(p)
	if err != nil {
		return "", false, fmt.Errorf("read %s: %w", p, err)
	}
	for kv := range bytes.SplitSeq(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok && k == name {
			return v, true, nil
		}
	}
	return "", false, nil
}

// MemTotal returns the host's total memory in bytes.
func MemTotal() (uint64, error) {
	p := filepath.Join(Root, "meminfo")
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	return kbField(data, "MemTotal:", p)
}

func statusField(pid int, key string) (uint64, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "status")
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	return kbField(data, key, p)
}

// kbField finds "Key:   123 kB" in a /proc text file and returns bytes.
func kbField(data []byte, key, path string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		f := strings.Fields(line[len(key):])
		if len(f) == 0 {
			break
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: bad %s value %q: %w", path, key, f[0], err)
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		return v, nil
	}
	return 0, fmt.Errorf("%s: no %s line", path, strings.TrimSuffix(key, ":"))
}

// Mapping is one memory mapping of /proc/<pid>/smaps with its sizes.
type Mapping struct {
	Start, End uint64
	Perms      string // "rw-p", "r-xp", ...
	Name       string // path or [heap], "" for anonymous memory
	RSS, PSS   uint64 // bytes
}

// Size is the mapping's length in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// Mappings reads /proc/<pid>/smaps.
func Mappings(pid int) ([]Mapping, error) {
	p := filepath.Join(Root, strconv.Itoa(pid), "smaps")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return parseSmaps(data)
}

func parseSmaps(data []byte) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				m := Mapping{Start: start, End: end}
				if len(f) >= 2 {
					m.Perms = f[1]
				}
				if len(f) >= 6 {
					m.Name = strings.Join(f[5:], " ")
				}
				out = append(out, m)
				continue
			}
		}
		if len(out) == 0 || len(f) < 2 {
			continue
		}
		cur := &out[len(out)-1]
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.RSS = v * 1024
		case "Pss:":
			cur.PSS = v * 1024
		}
	}
	return out, sc.Err()
}
