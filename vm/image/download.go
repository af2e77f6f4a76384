package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cheggaaa/pb/v3"
)

// fetcher downloads one URL into a file, hashing as it goes, resuming an
// interrupted HTTP transfer with a Range request where the server allows.
type fetcher struct {
	client   *http.Client
	logger   *slog.Logger
	progress io.Writer
	// retries is how many times an interrupted transfer is resumed.
	retries int
	// backoff is the pause before the first retry; it doubles each time.
	backoff time.Duration
	// idle ends a response whose body sends no byte for this long, so a
	// stalled server is resumed from like a dropped one.
	idle time.Duration
	// report, when set, receives progress (see PullOptions.OnProgress).
	report func(done, total int64)
}

// reportEvery spaces progress reports.
const reportEvery = 250 * time.Millisecond

// progressReader counts bytes read for fetcher.report.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	last  time.Time
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.last) >= reportEvery || (err != nil && p.done > 0) {
		p.last = now
		p.fn(p.done, p.total)
	}
	return n, err
}

// errIdle is a response body that stopped sending.
var errIdle = errors.New("the server sent nothing")

// idleReader reads a response body and cancels its request (through
// cancel) when no byte arrives for idle, which unblocks the pending Read.
type idleReader struct {
	r      io.Reader
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelCauseFunc
}

func newIdleReader(r io.Reader, idle time.Duration, cancel context.CancelCauseFunc) *idleReader {
	ir := &idleReader{r: r, idle: idle, cancel: cancel}
	ir.timer = time.AfterFunc(idle, func() {
		cancel(fmt.Errorf("%w for %s", errIdle, idle))
	})
	return ir
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.timer.Reset(ir.idle)
	}
	return n, err
}

// stop disarms the timer once the body is done with.
func (ir *idleReader) stop() { ir.timer.Stop() }

// errHTTPStatus is a final HTTP error: retrying will not help.
type errHTTPStatus struct {
	url    string
	status string
}

func (e *errHTTPStatus) Error() string {
	return fmt.Sprintf("GET %s: %s (check the URL)", e.url, e.status)
}

// fetch downloads src into dst (created) and returns the SHA-256 digest
// (hex) and size of what it wrote.
func (f *fetcher) fetch(ctx context.Context, src *url.URL, dst string) (string, int64, error) {
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("download: %w", err)
	}
	defer out.Close()
	h := sha256.New()
	var n int64
	switch src.Scheme {
	case "file":
		n, err = f.fetchFile(ctx, src.Path, out, h)
	case "http", "https":
		n, err = f.fetchHTTP(ctx, src.String(), out, h)
	default:
		err = fmt.Errorf("unsupported URL scheme %q in %s: use http://, https:// or file://", src.Scheme, src)
	}
	if err != nil {
		return "", 0, err
	}
	if err := out.Sync(); err != nil {
		return "", 0, fmt.Errorf("download: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func (f *fetcher) fetchFile(ctx context.Context, path string, out io.Writer, h hash.Hash) (int64, error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("read %s: not a regular file", path)
	}
	bar := f.startBar(fi.Size())
	defer finishBar(bar)
	n, err := io.Copy(io.MultiWriter(out, h), f.proxy(bar, &ctxReader{ctx: ctx, r: in}, 0, fi.Size()))
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", path, err)
	}
	return n, nil
}

func (f *fetcher) fetchHTTP(ctx context.Context, src string, out *os.File, h hash.Hash) (int64, error) {
	var (
		written   int64
		total     int64 = -1
		validator string
		bar       *pb.ProgressBar
		lastErr   error
	)
	defer func() { finishBar(bar) }()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if attempt > f.retries {
				return written, fmt.Errorf("download %s: %w (gave up after %d attempts; run the pull again)", src, lastErr, attempt)
			}
			wait := f.backoff << (attempt - 1)
			f.logger.Warn("download interrupted, resuming", "url", src, "at", written, "of", total, "attempt", attempt+1, "err", lastErr)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return written, fmt.Errorf("download %s: %w", src, ctx.Err())
			case <-t.C:
			}
		}
		reqCtx, cancelReq := context.WithCancelCause(ctx)
		req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, src, nil)
		if err != nil {
			cancelReq(nil)
			return 0, fmt.Errorf("download %s: %w", src, err)
		}
		if written > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", written))
			if validator != "" {
				req.Header.Set("If-Range", validator)
			}
		}
		resp, err := f.client.Do(req)
		if err != nil {
			cancelReq(nil)
			if ctx.Err() != nil {
				return written, fmt.Errorf("download %s: %w", src, ctx.Err())
			}
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				return written, fmt.Errorf("download %s: %w (check the host name, or the network's DNS)", src, err)
			}
			lastErr = err
			continue
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && written > 0:
			start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
			if !ok || start != written {
				resp.Body.Close()
				cancelReq(nil)
				return written, fmt.Errorf("download %s: the server resumed at a bad offset (%q, want %d)", src, resp.Header.Get("Content-Range"), written)
			}
			if size >= 0 {
				total = size
			}
		case resp.StatusCode == http.StatusOK:
			if written > 0 {
				f.logger.Info("server does not resume downloads; starting over", "url", src)
				if err := restart(out, h); err != nil {
					resp.Body.Close()
					cancelReq(nil)
					return 0, err
				}
				written = 0
			}
			total = resp.ContentLength
			validator = resp.Header.Get("ETag")
			if validator == "" || strings.HasPrefix(validator, "W/") {
				validator = resp.Header.Get("Last-Modified")
			}
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			resp.Body.Close()
			cancelReq(nil)
			lastErr = &errHTTPStatus{url: src, status: resp.Status}
			continue
		default:
			resp.Body.Close()
			cancelReq(nil)
			return written, &errHTTPStatus{url: src, status: resp.Status}
		}
		if bar == nil {
			bar = f.startBar(total)
		}
		if bar != nil {
			bar.SetCurrent(written)
		}
		body := newIdleReader(resp.Body, f.idle, cancelReq)
		n, err := io.Copy(io.MultiWriter(out, h), f.proxy(bar, body, written, total))
		body.stop()
		resp.Body.Close()
		if cause := context.Cause(reqCtx); err != nil && errors.Is(cause, errIdle) {
			err = fmt.Errorf("download stalled at %d bytes: %w", written+n, cause)
		}
		cancelReq(nil)
		written += n
		if err == nil && total >= 0 && written != total {
			err = fmt.Errorf("got %d of %d bytes: %w", written, total, io.ErrUnexpectedEOF)
		}
		if err == nil {
			return written, nil
		}
		if ctx.Err() != nil {
			return written, fmt.Errorf("download %s: %w", src, ctx.Err())
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("download truncated at %d of %d bytes: %w", written, total, err)
		}
		lastErr = err
	}
}

// restart empties the output and the hash for a fresh transfer.
func restart(out *os.File, h hash.Hash) error {
	if err := out.Truncate(0); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	h.Reset()
	return nil
}

// parseContentRange parses "bytes START-END/SIZE" (SIZE may be "*").
func parseContentRange(s string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}

// startBar starts a progress bar when a progress writer is set.
func (f *fetcher) startBar(total int64) *pb.ProgressBar {
	if f.progress == nil {
		return nil
	}
	if total < 0 {
		total = 0
	}
	bar := pb.New64(total).SetTemplate(pb.Full).Set(pb.Bytes, true).SetWriter(f.progress)
	if w := barWidth(f.progress); w > 0 {
		bar.SetWidth(w)
	}
	return bar.Start()
}

// proxy wraps r for the progress bar and the progress callback; done is
// what was received before r (a resumed transfer), total the size or -1.
func (f *fetcher) proxy(bar *pb.ProgressBar, r io.Reader, done, total int64) io.Reader {
	if f.report != nil {
		r = &progressReader{r: r, done: done, total: total, fn: f.report}
	}
	if bar == nil {
		return r
	}
	return bar.NewProxyReader(r)
}

func finishBar(bar *pb.ProgressBar) {
	if bar != nil {
		bar.Finish()
	}
}
