// Package socktop is mb-agent's socktop-compatible metrics server: a
// WebSocket at /ws speaking the protocol of socktop_agent, so that the
// socktop TUI, or any client of that protocol, can watch a guest. It
// samples /proc only when a client asks, and caches each kind of sample for
// a short TTL, so an idle server costs nothing and many clients cost what
// one does.
//
// Requests are text frames: get_metrics, get_disks, get_processes (or the
// JSON form {"type":"metrics"} etc.); anything else is ignored. Metrics and
// disks are JSON, sent as a text frame up to 768 bytes and gzip-compressed
// in a binary frame above; processes are a protobuf message (package
// socktoppb describes it) in a binary frame, gzip-compressed above 768
// bytes.
package socktop

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// The default cache lifetimes, socktop_agent's.
const (
	DefaultMetricsTTL   = 250 * time.Millisecond
	DefaultProcessesTTL = time.Second
	DefaultDisksTTL     = time.Second
)

// DefaultPort is socktop's port.
const DefaultPort = 3000

// gzipAbove is the reply size above which replies are gzip-compressed.
const gzipAbove = 768

// maxRequest bounds a client's frame; requests are a few bytes.
const maxRequest = 4096

// Options configures a Server.
type Options struct {
	// Token, when set, is required as ?token= on /ws; a connection
	// without it is closed right after the upgrade.
	Token string
	// TLSDir, when set, makes the server speak TLS with the self-signed
	// certificate kept in this directory, created on first start.
	TLSDir string
	// Cache lifetimes; the defaults when zero.
	MetricsTTL, ProcessesTTL, DisksTTL time.Duration
	// ProcRoot is where procfs is mounted; /proc when empty.
	ProcRoot string
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves socktop's protocol.
type Server struct {
	token       string
	tls         *tls.Config
	fingerprint string
	col         *collector
	log         *slog.Logger
}

// New returns a server; with opts.TLSDir it loads or creates the
// certificate there.
func New(opts Options) (*Server, error) {
	if opts.MetricsTTL <= 0 {
		opts.MetricsTTL = DefaultMetricsTTL
	}
	if opts.ProcessesTTL <= 0 {
		opts.ProcessesTTL = DefaultProcessesTTL
	}
	if opts.DisksTTL <= 0 {
		opts.DisksTTL = DefaultDisksTTL
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	s := &Server{token: opts.Token, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "socktop")
	s.col = newCollector(opts.ProcRoot, opts.MetricsTTL, opts.DisksTTL, opts.ProcessesTTL)
	if opts.TLSDir != "" {
		cert, fp, err := loadOrCreateCert(opts.TLSDir)
		if err != nil {
			return nil, err
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.fingerprint = fp
	}
	return s, nil
}

// Fingerprint returns the SHA-256 fingerprint of the TLS certificate (hex,
// colon-separated), or "" without TLS.
func (s *Server) Fingerprint() string { return s.fingerprint }

// Handler returns the HTTP handler: /ws and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ws", s.serveWS)
	return mux
}

// ListenAndServe listens on addr (host:port, or :port) and serves until ctx
// ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("socktop: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then closes it and returns ctx.Err().
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	scheme := "ws"
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
		scheme = "wss"
	}
	attrs := []any{"url", fmt.Sprintf("%s://%s/ws", scheme, ln.Addr())}
	if s.fingerprint != "" {
		attrs = append(attrs, "sha256_fingerprint", s.fingerprint)
	}
	s.log.Info("socktop server listening", attrs...)
	if s.token == "" {
		s.log.Warn("socktop server has no token: anyone who can reach the port sees the process list (set --socktop-token or SOCKTOP_TOKEN)")
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	defer stop()
	err := hs.Serve(ln)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("socktop: %w", err)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	defer c.CloseNow()
	if s.token != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(s.token)) != 1 {
		s.log.Info("socktop client refused: wrong or missing token", "remote", r.RemoteAddr)
		c.Close(websocket.StatusPolicyViolation, "token required")
		return
	}
	c.SetReadLimit(maxRequest)
	ctx := r.Context()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		if err := s.answer(ctx, c, requestKind(data)); err != nil {
			s.log.Debug("socktop reply failed", "remote", r.RemoteAddr, "err", err)
			return
		}
	}
}

// requestKind maps a request frame to metrics, disks or processes, or "".
func requestKind(data []byte) string {
	t := strings.TrimSpace(string(data))
	switch t {
	case "get_metrics":
		return "metrics"
	case "get_disks":
		return "disks"
	case "get_processes":
		return "processes"
	}
	if strings.HasPrefix(t, "{") {
		var req struct{ Type string }
		if json.Unmarshal(data, &req) == nil {
			switch req.Type {
			case "metrics", "disks", "processes":
				return req.Type
			}
		}
	}
	return ""
}

// answer sends the reply to one request; an unknown one gets none.
func (s *Server) answer(ctx context.Context, c *websocket.Conn, kind string) error {
	switch kind {
	case "metrics":
		return sendJSON(ctx, c, s.col.Metrics())
	case "disks":
		return sendJSON(ctx, c, s.col.Disks())
	case "processes":
		return sendBinary(ctx, c, encodeProcesses(s.col.Processes()))
	}
	return nil
}

// sendJSON sends v as a text frame, or gzip-compressed in a binary frame
// when it is over gzipAbove bytes.
func sendJSON(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode reply: %w", err)
	}
	if len(b) <= gzipAbove {
		return c.Write(ctx, websocket.MessageText, b)
	}
	return c.Write(ctx, websocket.MessageBinary, gzipBytes(b))
}

// sendBinary sends b in a binary frame, gzip-compressed above gzipAbove.
func sendBinary(ctx context.Context, c *websocket.Conn, b []byte) error {
	if len(b) > gzipAbove {
		b = gzipBytes(b)
	}
	return c.Write(ctx, websocket.MessageBinary, b)
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}
