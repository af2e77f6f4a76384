package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
	"github.com/mbvm/mb/monitor"
)

// Limits of the heartbeat receiver beyond the wire's.
const (
	// ReadBuffer is the UDP receive buffer asked for (the kernel may cap
	// it at net.core.rmem_max unless the process may raise it).
	ReadBuffer = 8 << 20
	// MaxPlugins is the most plugins one host keeps data for.
	MaxPlugins = 32
	// MaxPluginBytes bounds one host's plugin data, summed over its
	// plugins' latest payloads; MaxPluginLeaves the values in one PLG.
	MaxPluginBytes  = 256 << 10
	MaxPluginLeaves = 4096
	// SignedWindow is how far a signed heartbeat's timestamp may be from
	// the receiver's clock.
	SignedWindow = 5 * time.Minute
	// MaxInterval bounds an announced interval.
	MaxInterval = 24 * time.Hour
	// maxQueued bounds a host's queued commands.
	maxQueued = 16
	// PluginHBC is the plugin under which boot and one-off messages are
	// kept.
	PluginHBC = "hbc"
)

// hbcReceiver is the UDP socket of heartbeat_listen and its readers.
type hbcReceiver struct {
	f        *Fleet
	conn     *net.UDPConn
	kernelTS bool
	once     sync.Once
}

func (f *Fleet) listenHBC(addr string) (*hbcReceiver, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("fleet: heartbeat_listen %s: %w", addr, err)
	}
	return f.receiveOn(pc.(*net.UDPConn)), nil
}

// receiveOn makes the receiver of a bound socket.
func (f *Fleet) receiveOn(conn *net.UDPConn) *hbcReceiver {
	setBuffers(conn, ReadBuffer)
	r := &hbcReceiver{f: f, conn: conn}
	r.kernelTS = enableTimestamps(conn)
	f.log.Info("fleet: hbc heartbeats", "addr", conn.LocalAddr().String(), "kernel_timestamps", r.kernelTS)
	return r
}

func (r *hbcReceiver) start(ctx context.Context, wg *sync.WaitGroup) {
	for i := 0; i < r.f.opts.HeartbeatReaders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := &hbcReader{r: r, f: r.f, buf: make([]byte, hbcwire.MaxDatagram+1), oob: make([]byte, 128)}
			rd.loop(ctx)
		}()
	}
}

func (r *hbcReceiver) close() { r.once.Do(func() { r.conn.Close() }) }

// hbcReader is one reading goroutine with its own codec state.
type hbcReader struct {
	r   *hbcReceiver
	f   *Fleet
	dec hbcwire.Decoder
	enc hbcwire.Encoder
	buf []byte
	oob []byte
}

func (rd *hbcReader) loop(ctx context.Context) {
	for {
		n, oobn, _, from, err := rd.r.conn.ReadMsgUDPAddrPort(rd.buf, rd.oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue // e.g. ECONNREFUSED from an earlier send, or a truncation
		}
		recv, ok := kernelTime(rd.oob[:oobn])
		if !ok {
			recv = time.Now()
		}
		rd.handle(ctx, rd.buf[:n], from, recv)
	}
}

// handle ingests one datagram: counted, and dropped on any fault.
func (rd *hbcReader) handle(ctx context.Context, b []byte, from netip.AddrPort, recv time.Time) {
	st := &rd.f.stats
	st.datagrams.Add(1)
	m, err := rd.dec.Decode(b)
	if err != nil {
		switch {
		case errors.Is(err, hbcwire.ErrTooLarge):
			st.tooLarge.Add(1)
		case errors.Is(err, hbcwire.ErrInflate):
			st.inflate.Add(1)
		case errors.Is(err, hbcwire.ErrTooManyFields):
			st.tooManyFields.Add(1)
		default:
			st.malformed.Add(1)
		}
		return
	}
	if m.BadFields > 0 {
		st.badFields.Add(uint64(m.BadFields))
	}
	switch m.ID {
	case hbcwire.HTB:
		rd.htb(ctx, m, from, recv)
	case hbcwire.PLG:
		rd.plg(ctx, m, from, recv)
	default:
		st.unknownID.Add(1)
	}
}

// accept checks a message's name and signature and returns its host's
// record with Fleet.mu held; nil (and the lock released) when refused.
func (rd *hbcReader) accept(m *hbcwire.Message, set *Settings, recv time.Time, strict bool) (string, *fhost, bool) {
	st := &rd.f.stats
	name := m.String("name")
	if !validName(name) {
		st.malformed.Add(1)
		return "", nil, false
	}
	signed := false
	var ts float64
	if set.HMACKey != nil {
		if m.Signed() {
			if m.Verify(set.HMACKey) != nil {
				st.badSig.Add(1)
				return "", nil, false
			}
			var err error
			ts, err = m.Float("timestamp")
			if err != nil || math.Abs(ts-unixSeconds(recv)) > SignedWindow.Seconds() {
				st.stale.Add(1)
				return "", nil, false
			}
			signed = true
		} else if set.HMACRequired {
			st.unsigned.Add(1)
			return "", nil, false
		}
	}
	rd.f.mu.Lock()
	h, err := rd.f.admit(name, signed)
	if err != nil {
		rd.f.mu.Unlock()
		return "", nil, false
	}
	if signed {
		if strict && ts <= h.lastSigned {
			rd.f.mu.Unlock()
			st.stale.Add(1) // a replay
			return "", nil, false
		}
		if strict {
			h.lastSigned = ts
		}
		h.signed = true
	} else if h.signed {
		rd.f.mu.Unlock()
		st.unsigned.Add(1) // this host signs: an unsigned one is forged
		return "", nil, false
	}
	return name, h, true
}

func (rd *hbcReader) htb(ctx context.Context, m *hbcwire.Message, from netip.AddrPort, recv time.Time) {
	f := rd.f
	set := f.set.Load()
	name, h, ok := rd.accept(m, set, recv, true)
	if !ok {
		return
	}
	f.stats.htb.Add(1)
	o := monitor.Observation{Host: name, Source: SourceHBC, Address: ipOf(from), Owner: m.String("owner"), Shutdown: m.Bool("shutdown")}
	if iv, err := m.Float("interval"); err == nil && iv > 0 && set.Hosts[name].Interval == 0 {
		o.Interval = min(time.Duration(iv*float64(time.Second)), MaxInterval)
	}
	rtt := 0.0
	if sent, err := m.Float("ack_sent"); err == nil {
		held, _ := m.Float("ack_held")
		if x := unixSeconds(recv) - sent - max(held, 0); x > 0 && x < 60 {
			rtt, h.rtt = x, x
		}
	}
	if rtt == 0 {
		for _, k := range []string{"rtt", "RTT"} {
			if x, err := m.Float(k); err == nil && x > 0 && x < 60 {
				rtt = x
				break
			}
		}
	}
	o.RTT = time.Duration(rtt * float64(time.Second))
	changed := h.noteAddress(o.Address)
	h.hbc = true
	needUpdate := !h.plugins
	serverRTT := h.rtt
	queue := h.queue
	h.queue = nil
	f.mu.Unlock()

	msg, hasMsg := m.Get("message")
	extra := htbExtras(m)
	if boot := m.Bool("boot"); boot || hasMsg || extra != nil {
		// Before the heartbeat: a shutdown heartbeat must be the last word.
		fields := map[string]any{"boot": boot, "message": m.String("message"), "time": recv.UTC().Format(time.RFC3339)}
		for k, v := range extra {
			fields[k] = v
		}
		if boot || hasMsg {
			f.log.Info("fleet: message from host", "host", name, "boot", boot, "message", msg)
		}
		_ = f.observe(ctx, monitor.Observation{Host: name, Source: SourceHBC, Plugin: PluginHBC, Fields: fields, Address: o.Address})
	}
	if err := f.observe(ctx, o); err != nil {
		return
	}
	if changed {
		f.addressChanged(name, o.Address)
	}

	ack := hbcwire.New(hbcwire.ACK)
	if ts, ok := m.Get("timestamp"); ok {
		ack.Add("timestamp", ts)
	}
	if seq, ok := m.Get("seq"); ok {
		ack.Add("seq", seq)
	}
	ack.Add("recv", unixSeconds(recv))
	if serverRTT > 0 {
		ack.Add("rtt", serverRTT)
	}
	if needUpdate {
		ack.Add("request_update", 1)
	}
	if !f.acks.allow(from.Addr(), recv) {
		f.stats.acksLimited.Add(1)
		if len(queue) > 0 {
			f.mu.Lock()
			h.queue = append(queue, h.queue...) // for the next heartbeat
			f.mu.Unlock()
		}
		return
	}
	ack.Add("sent", unixSeconds(time.Now()))
	rd.send(ack, m.Compressed, set, from)
	for _, q := range queue {
		f.stats.cmds.Add(1) // before the send: the counter never lags what a client saw
		rd.send(q.message(), m.Compressed, set, from)
	}
}

func (rd *hbcReader) send(m *hbcwire.Message, compressed bool, set *Settings, to netip.AddrPort) {
	b, err := rd.enc.Encode(m, hbcwire.EncodeOptions{Plain: !compressed, Key: set.HMACKey})
	if err != nil {
		rd.f.stats.sendErrors.Add(1)
		return
	}
	if m.ID == hbcwire.ACK {
		rd.f.stats.acks.Add(1) // before the send, as for commands
	}
	if _, err := rd.r.conn.WriteToUDPAddrPort(b, to); err != nil {
		rd.f.stats.sendErrors.Add(1)
	}
}

func (rd *hbcReader) plg(ctx context.Context, m *hbcwire.Message, from netip.AddrPort, recv time.Time) {
	f := rd.f
	st := &f.stats
	plugin := m.String("plugin")
	if !validName(plugin) || len(plugin) > 64 {
		st.malformed.Add(1)
		return
	}
	fields := make(map[string]any, len(m.Fields))
	size, leaves := 0, 0
	for _, fl := range m.Fields {
		switch fl.Key {
		case "name", "plugin", "timestamp":
			continue
		}
		v, ok := hbcwire.Value(fl.Value)
		if !ok {
			st.badFields.Add(1)
			continue
		}
		size += len(fl.Key) + len(fl.Value)
		leaves += countLeaves(v)
		fields[fl.Key] = v
	}
	if leaves > MaxPluginLeaves || size > MaxPluginBytes {
		st.tooManyFields.Add(1)
		return
	}
	name, h, ok := rd.accept(m, f.set.Load(), recv, false)
	if !ok {
		return
	}
	if h.pluginSizes == nil {
		h.pluginSizes = map[string]int{}
	}
	old, known := h.pluginSizes[plugin]
	if (!known && len(h.pluginSizes) >= MaxPlugins) || h.pluginBytes-old+size > MaxPluginBytes {
		f.mu.Unlock()
		st.tooManyFields.Add(1)
		return
	}
	h.pluginSizes[plugin] = size
	h.pluginBytes += size - old
	addr := ipOf(from)
	changed := h.noteAddress(addr)
	f.mu.Unlock()
	st.plg.Add(1)
	if err := f.observe(ctx, monitor.Observation{Host: name, Source: SourceHBC, Plugin: plugin, Fields: fields, Address: addr}); err != nil {
		return
	}
	// Only once the data is in: an ACK without request_update promises it.
	f.mu.Lock()
	h.plugins = true
	f.mu.Unlock()
	if changed {
		f.addressChanged(name, addr)
	}
}

// htbKeys are the HTB keys the receiver reads; others are kept as fields
// of the hbc plugin.
var htbKeys = map[string]bool{
	"name": true, "timestamp": true, "interval": true, "rtt": true, "RTT": true, "acks": true, "boot": true,
	"shutdown": true, "message": true, "owner": true, "seq": true, "ack_sent": true, "ack_held": true,
}

// htbExtras returns an HTB's other keys as values, nil when none (bounded
// like a PLG's).
func htbExtras(m *hbcwire.Message) map[string]any {
	var out map[string]any
	size, leaves := 0, 0
	for _, fl := range m.Fields {
		if htbKeys[fl.Key] {
			continue
		}
		v, ok := hbcwire.Value(fl.Value)
		if !ok {
			continue
		}
		size += len(fl.Key) + len(fl.Value)
		leaves += countLeaves(v)
		if size > MaxPluginBytes || leaves > MaxPluginLeaves {
			return out
		}
		if out == nil {
			out = map[string]any{}
		}
		out[fl.Key] = v
	}
	return out
}

// countLeaves counts the scalar values in decoded JSON.
func countLeaves(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 0
		for _, e := range x {
			n += countLeaves(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += countLeaves(e)
		}
		return n
	}
	return 1
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
