#!/usr/bin/python3
"""mb-agent's cost in a mini guest with the command socket and socktop on:
CPU over 60 s on the guest clock and memory (VmRSS, its anon/file/shmem
parts, PSS) of PID 1 (init) and the agent child, from the guest's /proc
through `mb exec`; then the same with a client polling get_metrics every
500 ms. The CPU figures include the agent's share of the two `mb exec`
reads that bound each window.

  make build image
  flock /tmp/mb-vm-tests.lock /usr/bin/python3 scripts/agent-idle-cost.py

Environment: MB (default bin/mb), IMG (default ~/.mb/images/mini),
CMDLINE (default "mb.socktop=:3000"; empty: socktop off, no client phase).
Needs Debian's python3-websockets."""
import asyncio, os, shutil, subprocess, sys, tempfile, threading, time
import websockets

MB = os.path.abspath(os.environ.get("MB", "bin/mb"))
IMG = os.environ.get("IMG", os.path.expanduser("~/.mb/images/mini"))
CMDLINE = os.environ.get("CMDLINE", "mb.socktop=:3000")
PORT = 3317
home = tempfile.mkdtemp(prefix="mb-agent-cost-")
shutil.rmtree(home, ignore_errors=True)
os.makedirs(home + "/images")
os.symlink(IMG, home + "/images/mini")
env = dict(os.environ, MB_HOME=home)

def mb(*args):
    r = subprocess.run([MB, *args], env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit("mb %s: %s" % (" ".join(args), r.stderr))
    return r.stdout

SNAP = r'''cat /proc/uptime; for p in /proc/[0-9]*; do s=$(cat $p/stat 2>/dev/null) || continue; echo "S $s"; grep -E '^(VmRSS|RssAnon|RssFile|RssShmem):' $p/status | sed "s|^|M ${p#/proc/} |"; grep -E '^Pss:' $p/smaps_rollup 2>/dev/null | sed "s|^|M ${p#/proc/} |"; done'''

def snap():
    out = mb("exec", "m", "--", "sh", "-c", SNAP).splitlines()
    up = float(out[0].split()[0])
    procs, mem = {}, {}
    for l in out[1:]:
        if l.startswith("S "):
            s = l[2:]
            pid = int(s.split()[0])
            comm = s[s.index("(") + 1:s.rindex(")")]
            f = s[s.rindex(")") + 2:].split()
            procs[pid] = dict(comm=comm, ppid=int(f[1]), ticks=int(f[11]) + int(f[12]))
        elif l.startswith("M "):
            _, pid, key, val, _ = l.split()
            mem.setdefault(int(pid), {})[key.rstrip(":")] = int(val)
    agent = {p: v for p, v in procs.items() if p == 1 or (v["ppid"] == 1 and v["comm"] in ("mb-agent", "exe"))}
    return up, agent, mem

def report(title, a, b):
    (u0, p0, _), (u1, p1, m1) = a, b
    wall = u1 - u0
    print("==", title, "(%.0f s on the guest clock)" % wall)
    for pid in sorted(p1):
        t = p1[pid]["ticks"] - p0[pid]["ticks"]
        m = m1.get(pid, {})
        print("  pid %d %-8s cpu %.3f %% (%d ticks)  VmRSS %d kB (anon %d, file %d, shmem %d) PSS %d kB" % (
            pid, p1[pid]["comm"], t / 100 / wall * 100, t, m.get("VmRSS", 0), m.get("RssAnon", 0), m.get("RssFile", 0), m.get("RssShmem", 0), m.get("Pss", 0)))

args = ["start", "m", "--image", "mini", "--memory", "256M", "--forward", "%d:3000" % PORT]
if CMDLINE:
    args += ["--cmdline", CMDLINE]
mb(*args)
try:
    time.sleep(20)
    a = snap(); time.sleep(60); b = snap()
    report("idle, no client", a, b)
    if CMDLINE:
        stop = threading.Event()
        async def poll():
            async with websockets.connect("ws://127.0.0.1:%d/ws" % PORT, max_size=1 << 24) as ws:
                while not stop.is_set():
                    await ws.send("get_metrics"); await ws.recv(); await asyncio.sleep(0.5)
        th = threading.Thread(target=lambda: asyncio.run(poll())); th.start()
        time.sleep(5)
        c = snap(); time.sleep(60); d = snap()
        stop.set(); th.join()
        report("a client polling get_metrics every 500 ms", c, d)
finally:
    subprocess.run([MB, "rm", "--force", "m"], env=env, capture_output=True)
    subprocess.run([MB, "daemon", "stop"], env=env, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
