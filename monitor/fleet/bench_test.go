package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
	"github.com/mbvm/mb/monitor"
)

// BenchmarkHTBHandle is the receiver's work per heartbeat without the
// socket read: decode, engine, ACK encode and send (to a closed port).
func BenchmarkHTBHandle(b *testing.B) {
	eng, err := monitor.New(monitor.Options{Settings: monitor.Settings{Interval: 10 * time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	f, err := New(Settings{HeartbeatListen: "127.0.0.1:0", MaxHosts: 20000}, Options{Engine: eng, ACKRate: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const hosts = 10000
	dgs := make([][]byte, hosts)
	for i := range dgs {
		m := hbcwire.New(hbcwire.HTB).Add("name", fmt.Sprintf("bench-%05d", i)).Add("timestamp", 1.7e9).Add("interval", 10)
		dgs[i], _ = hbcwire.Encode(m, hbcwire.EncodeOptions{})
	}
	rd := &hbcReader{r: f.hbc, f: f}
	to := netip.MustParseAddrPort("127.0.0.1:9")
	ctx := context.Background()
	for i := range dgs {
		rd.handle(ctx, dgs[i], to, time.Now())
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		rd.handle(ctx, dgs[i%hosts], to, time.Now())
		i++
	}
}
