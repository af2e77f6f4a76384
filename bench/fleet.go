package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/fleet"
	"github.com/mbvm/mb/monitor/service"
)

// fleetPart measures the monitor's fleet receivers in process: hbc UDP
// ingest against a bare receive loop on the same socket, the CPU cost of
// 10,000 hosts heartbeating every 10 s (the senders in a child process),
// and /api/register on keep-alive connections.
func fleetPart() part {
	return part{name: "fleet", rows: []rowDef{
		{id: "fleet.udp_rate", name: "fleet: hbc HTB datagrams ingested per second (closed loop: the sender keeps at most 2,000 in flight)", unit: "datagrams/s"},
		{id: "fleet.udp_bare", name: "fleet: bare Go receive loop on the same socket, same datagrams", unit: "datagrams/s"},
		{id: "fleet.udp_ratio", name: "fleet: hbc ingest rate / bare receive loop rate", unit: "ratio"},
		{id: "fleet.udp_us", name: "fleet: receiver time per HTB datagram (decode, engine, ACK)", unit: "µs", target: &target{"<", 20},
			note: "< 20 µs is >= 50,000 datagrams/s"},
		{id: "fleet.udp_service", name: "fleet: hbc HTB datagrams ingested per second through the whole monitor service (journal on, SQLite store), closed loop", unit: "datagrams/s"},
		{id: "fleet.udp_loss", name: "fleet: HTB datagrams lost at 50,000/s sent open loop", unit: "datagrams", target: &target{"<=", 0}},
		{id: "fleet.cpu_10k", name: "fleet: CPU for 10,000 hosts heartbeating every 10 s", unit: "% of a core", target: &target{"<", 5}},
		{id: "fleet.register_rate", name: "fleet: POST /api/register per second on keep-alive connections (4 clients in process)", unit: "req/s"},
		{id: "fleet.register_us", name: "fleet: time per registration", unit: "µs", target: &target{"<", 100},
			note: "< 100 µs is >= 10,000 registrations/s"},
	}, run: runFleet}
}

// The heartbeat sender child: `MB_BENCH_HBC_SEND=addr,hosts,interval,seconds`.
const senderEnv = "MB_BENCH_HBC_SEND"

func init() {
	if spec := os.Getenv(senderEnv); spec != "" {
		if err := runSender(spec); err != nil {
			fmt.Fprintln(os.Stderr, "sender:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// htbDatagrams encodes one zlib HTB per host.
func htbDatagrams(hosts int, interval int) [][]byte {
	out := make([][]byte, hosts)
	var enc hbcwire.Encoder
	for i := range out {
		m := hbcwire.New(hbcwire.HTB).Add("name", fmt.Sprintf("bench-%05d", i)).
			Add("timestamp", float64(time.Now().UnixNano())/1e9).Add("interval", interval)
		b, err := enc.Encode(m, hbcwire.EncodeOptions{})
		if err != nil {
			panic(err)
		}
		out[i] = bytes.Clone(b)
	}
	return out
}

// runSender sends every host's HTB once per interval, spread evenly.
func runSender(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 4 {
		return errors.New("want addr,hosts,interval,seconds")
	}
	hosts, _ := strconv.Atoi(f[1])
	interval, _ := strconv.Atoi(f[2])
	secs, _ := strconv.Atoi(f[3])
	conn, err := net.Dial("udp", f[0])
	if err != nil {
		return err
	}
	dgs := htbDatagrams(hosts, interval)
	perTick := float64(hosts) / float64(interval) / 100 // every 10 ms
	start := time.Now()
	sent, next := 0.0, 0
	for t := time.NewTicker(10 * time.Millisecond); time.Since(start) < time.Duration(secs)*time.Second; <-t.C {
		sent += perTick
		for ; float64(next) < sent; next++ {
			conn.Write(dgs[next%hosts])
		}
	}
	return nil
}

// fleetRig is an engine and a fleet on a socket, with the engine's Tick.
type fleetRig struct {
	eng    *monitor.Engine
	f      *fleet.Fleet
	cancel context.CancelFunc
	done   chan struct{}
}

func newFleetRig(conn *net.UDPConn) (*fleetRig, error) {
	eng, err := monitor.New(monitor.Options{Settings: monitor.Settings{Interval: 10 * time.Second, Grace: 2 * time.Second}})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := fleet.New(fleet.Settings{MaxHosts: 20000}, fleet.Options{Engine: eng, Logger: quiet, HeartbeatConn: conn, ACKRate: 1 << 30})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &fleetRig{eng: eng, f: f, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.Run(ctx)
		}()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case now := <-t.C:
				_ = eng.Tick(ctx, now)
			}
		}
	}()
	return r, nil
}

func (r *fleetRig) close() {
	r.cancel()
	<-r.done
}

func listenUDP() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(fleet.ReadBuffer)
	return c, nil
}

// blast sends n datagrams keeping at most window in flight by the
// receiver's count, and returns the receive rate.
func blast(ctx context.Context, to net.Addr, dgs [][]byte, n int, received func() uint64) (float64, error) {
	conn, err := net.Dial("udp", to.String())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	const window = 2000
	base := received()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		for uint64(i)-(received()-base) > window {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			time.Sleep(50 * time.Microsecond)
		}
		conn.Write(dgs[i%len(dgs)])
	}
	deadline := time.Now().Add(30 * time.Second)
	for received()-base < uint64(n) {
		if time.Now().After(deadline) {
			// Lost in flight; count what arrived.
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	got := received() - base
	return float64(got) / time.Since(t0).Seconds(), nil
}

// bareLoop reads conn until stop, counting datagrams.
func bareLoop(conn *net.UDPConn, count *atomic.Uint64, stop *atomic.Bool) {
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for !stop.Load() {
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, _, _, err := conn.ReadMsgUDPAddrPort(buf, oob); err == nil {
			count.Add(1)
		}
	}
	conn.SetReadDeadline(time.Time{})
}

func runFleet(ctx context.Context, e *env, r *results) error {
	n, runs := 200000, e.cfg.runs
	if e.cfg.quick {
		n = 30000
	}
	for _, id := range []string{"fleet.udp_rate", "fleet.udp_bare", "fleet.udp_ratio", "fleet.udp_us"} {
		r.note(id, "%d datagrams a run, 1,000 host names, zlib", n)
	}
	dgs := htbDatagrams(1000, 10)
	var rates, bares, ratios, us []float64
	for run := 0; run < runs; run++ {
		conn, err := listenUDP()
		if err != nil {
			return err
		}
		// The bare loop first, on the socket the fleet then receives on.
		var count atomic.Uint64
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			bareLoop(conn, &count, &stop)
		}()
		bare, err := blast(ctx, conn.LocalAddr(), dgs, n, count.Load)
		stop.Store(true)
		<-done
		if err != nil {
			conn.Close()
			return err
		}
		fr, err := newFleetRig(conn)
		if err != nil {
			conn.Close()
			return err
		}
		rate, err := blast(ctx, conn.LocalAddr(), dgs, n, func() uint64 { return fr.f.Stats().HTB })
		fr.close()
		if err != nil {
			return err
		}
		bares, rates = append(bares, bare), append(rates, rate)
		ratios = append(ratios, rate/bare)
		us = append(us, 1e6/rate)
		e.log.Info("fleet udp run", "run", run+1, "bare", int(bare), "fleet", int(rate))
	}
	r.set("fleet.udp_rate", rates)
	r.set("fleet.udp_bare", bares)
	r.setRatio("fleet.udp_ratio", median(rates)/median(bares), ratios)
	r.set("fleet.udp_us", us)

	if err := fleetService(ctx, e, r, dgs, n); err != nil {
		return err
	}
	if err := fleetLoss(ctx, e, r, dgs); err != nil {
		return err
	}
	if err := fleetCPU(ctx, e, r); err != nil {
		return err
	}
	return fleetRegister(ctx, e, r)
}

// fleetLoss sends at 50,000 datagrams/s open loop and counts the loss.
func fleetLoss(ctx context.Context, e *env, r *results, dgs [][]byte) error {
	secs := 4
	if e.cfg.quick {
		secs = 1
	}
	r.note("fleet.udp_loss", "%d s at 50,000/s, receive buffer %d MiB asked", secs, fleet.ReadBuffer>>20)
	var losses []float64
	for run := 0; run < e.cfg.runs; run++ {
		conn, err := listenUDP()
		if err != nil {
			return err
		}
		fr, err := newFleetRig(conn)
		if err != nil {
			conn.Close()
			return err
		}
		out, err := net.Dial("udp", conn.LocalAddr().String())
		if err != nil {
			fr.close()
			return err
		}
		total := 50000 * secs
		t0 := time.Now()
		for i := 0; i < total; i++ {
			if i%500 == 0 {
				// 500 datagrams every 10 ms.
				if d := time.Until(t0.Add(time.Duration(i/500) * 10 * time.Millisecond)); d > 0 {
					time.Sleep(d)
				}
			}
			out.Write(dgs[i%len(dgs)])
		}
		out.Close()
		deadline := time.Now().Add(30 * time.Second)
		for fr.f.Stats().Datagrams < uint64(total) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		got := fr.f.Stats().Datagrams
		fr.close()
		losses = append(losses, float64(int64(total)-int64(got)))
	}
	r.set("fleet.udp_loss", losses)
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fleetCPU runs 10,000 hosts at a 10 s interval from a child process
// against the whole monitor service (engine, journal, store, Tick) and
// measures this process's CPU.
func fleetCPU(ctx context.Context, e *env, r *results) error {
	warm, window := 12*time.Second, 20*time.Second
	if e.cfg.quick {
		window = 5 * time.Second
	}
	r.note("fleet.cpu_10k", "the monitor service with its journal; 1,000 datagrams/s from a child process; measured over %s after every host was created", window)
	dir, err := os.MkdirTemp(e.work, "fleetcpu")
	if err != nil {
		return err
	}
	cfg := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(cfg, []byte("heartbeat_listen: 127.0.0.1:0\ninterval: 10\nmax_hosts: 20000\n"), 0o600); err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := service.New(ctx, service.Options{ConfigPath: cfg, StateDir: filepath.Join(dir, "state"), Logger: quiet})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.Run(sctx)
	}()
	defer func() {
		cancel()
		<-done
		svc.Close()
	}()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	runs := e.cfg.runs
	total := warm + time.Duration(runs)*window
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,10000,10,%d", senderEnv, svc.Fleet().HeartbeatAddr(), int(total.Seconds())+2))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(warm):
	}
	var pct []float64
	for run := 0; run < runs; run++ {
		c0, t0 := cpuTime(), time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(window):
		}
		pct = append(pct, 100*float64(cpuTime()-c0)/float64(time.Since(t0)))
	}
	if n := len(svc.Engine().Hosts()); n < 10000 {
		r.note("fleet.cpu_10k", "only %d hosts arrived", n)
	}
	r.set("fleet.cpu_10k", pct)
	return nil
}

// fleetRegister posts registrations on keep-alive connections.
func fleetRegister(ctx context.Context, e *env, r *results) error {
	n := 40000
	if e.cfg.quick {
		n = 8000
	}
	r.note("fleet.register_rate", "%d registrations a run over 10,000 host names", n)
	eng, err := monitor.New(monitor.Options{Settings: monitor.Settings{Interval: 30 * time.Second}})
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := fleet.New(fleet.Settings{MaxHosts: 20000}, fleet.Options{Engine: eng, Logger: quiet})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/api/register"
	bodies := make([][]byte, 10000)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"hostname":"reg-%05d","ip_address":"10.%d.%d.%d","interface":"eth0"}`, i, i>>16&255, i>>8&255, i&255)
	}
	var rates, us []float64
	for run := 0; run < e.cfg.runs; run++ {
		const clients = 4
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				for {
					i := next.Add(1) - 1
					if i >= int64(n) || ctx.Err() != nil {
						return
					}
					resp, err := hc.Post(url, "application/json", bytes.NewReader(bodies[i%int64(len(bodies))]))
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			return fmt.Errorf("%d of %d registrations failed", f, n)
		}
		rate := float64(n) / time.Since(t0).Seconds()
		rates, us = append(rates, rate), append(us, 1e6/rate)
	}
	r.set("fleet.register_rate", rates)
	r.set("fleet.register_us", us)
	return nil
}

// fleetService measures ingest through monitor/service as `mb monitor
// serve` runs it: the engine with its journal and store.
func fleetService(ctx context.Context, e *env, r *results, dgs [][]byte, n int) error {
	r.note("fleet.udp_service", "%d datagrams a run, journal_enabled (default)", n)
	var rates []float64
	for run := 0; run < e.cfg.runs; run++ {
		dir, err := os.MkdirTemp(e.work, "fleetsvc")
		if err != nil {
			return err
		}
		cfg := filepath.Join(dir, "monitor.yaml")
		if err := os.WriteFile(cfg, []byte("heartbeat_listen: 127.0.0.1:0\ninterval: 10\n"), 0o600); err != nil {
			return err
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc, err := service.New(ctx, service.Options{ConfigPath: cfg, StateDir: filepath.Join(dir, "state"), Logger: quiet})
		if err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			svc.Run(sctx)
		}()
		rate, err := blast(ctx, svc.Fleet().HeartbeatAddr(), dgs, n, func() uint64 { return svc.Fleet().Stats().HTB })
		cancel()
		<-done
		svc.Close()
		if err != nil {
			return err
		}
		rates = append(rates, rate)
	}
	r.set("fleet.udp_service", rates)
	return nil
}
