package image

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mbvm/mb/vm/disk"
)

// PullOptions says what to download and how.
type PullOptions struct {
	// URL is an http://, https:// or file:// URL of a qcow2 or raw disk.
	URL string
	// Name is the image name; NameFromSource(URL) when empty.
	Name string
	// SHA256 is the expected digest (hex); checked when set.
	SHA256 string
	// Arch is recorded in the manifest (x86_64 or aarch64); optional.
	Arch string
	// Progress receives a progress bar; nil draws none. Pass
	// TerminalProgress(os.Stderr).
	Progress io.Writer
	// OnProgress, when set, is called as the download advances with the
	// bytes received and the total (-1 when unknown), at most a few times
	// a second.
	OnProgress func(done, total int64)
	// Client is the HTTP client; a default with connection timeouts when nil.
	Client *http.Client
	// Logger receives progress events; slog.Default() when nil.
	Logger *slog.Logger
	// Retries is how often an interrupted transfer is resumed (default 4).
	Retries int
	// RetryBackoff is the first pause before a retry (default 1s).
	RetryBackoff time.Duration
	// IdleTimeout ends a transfer that receives no byte for this long
	// (default DefaultIdleTimeout); the pull then resumes it like a
	// dropped one.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is how long a download may receive nothing before it
// is treated as interrupted.
const DefaultIdleTimeout = 30 * time.Second

// ErrDigestMismatch means the download's SHA-256 is not the expected one.
var ErrDigestMismatch = errors.New("SHA-256 digest mismatch")

// Pull downloads a disk image into $MB_HOME/images/<name>: it resumes an
// interrupted HTTP transfer with Range requests where the server supports
// them, verifies the digest when given one and records the digest it
// computed, checks the file is a qcow2 or raw disk, and moves the finished
// image into place in one rename. A lock per image makes a second pull of
// the same image wait, then find it done. Whatever fails, no partial
// download and no half-made image directory is left behind.
func Pull(ctx context.Context, mbHome string, o PullOptions) (*Manifest, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("bad image URL %q: want http://, https:// or file:// (for a local file, mb image import FILE also works)", o.URL)
	}
	name := o.Name
	if name == "" {
		name = NameFromSource(o.URL)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	want, err := normaliseDigest(o.SHA256)
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}

	lock, err := lockImage(ctx, mbHome, name)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if exists(mbHome, name) {
		m, err := Load(mbHome, name)
		if err == nil && m.Source == o.URL && (want == "" || m.SHA256 == want) {
			logger.Info("image already pulled", "image", name, "source", o.URL)
			return m, nil
		}
		return nil, fmt.Errorf("image %q: %w: remove it with `mb image rm %s` or choose another --name", name, ErrExists, name)
	}

	st, err := newStaging(mbHome, name)
	if err != nil {
		return nil, err
	}
	defer st.discard()
	tmp := filepath.Join(st.dir, "download")
	f := &fetcher{client: o.Client, logger: logger, progress: o.Progress, retries: o.Retries, backoff: o.RetryBackoff, idle: o.IdleTimeout, report: o.OnProgress}
	if f.idle <= 0 {
		f.idle = DefaultIdleTimeout
	}
	if f.client == nil {
		f.client = defaultClient()
	}
	if f.retries == 0 {
		f.retries = 4
	}
	if f.backoff == 0 {
		f.backoff = time.Second
	}
	logger.Info("pulling image", "image", name, "url", o.URL)
	digest, size, err := f.fetch(ctx, u, tmp)
	if err != nil {
		return nil, fmt.Errorf("pull image %q: %w", name, err)
	}
	if want != "" && digest != want {
		return nil, fmt.Errorf("pull image %q from %s: %w: got %s, want %s (the download is corrupt or the --sha256 is wrong; nothing was kept)", name, o.URL, ErrDigestMismatch, digest, want)
	}
	info, err := disk.Probe(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("pull image %q from %s: %w", name, o.URL, err)
	}
	diskFile := "disk." + info.Format
	if err := os.Rename(tmp, filepath.Join(st.dir, diskFile)); err != nil {
		return nil, fmt.Errorf("pull image %q: %w", name, err)
	}
	// The base image is never written: make that plain on disk too.
	if err := os.Chmod(filepath.Join(st.dir, diskFile), 0o444); err != nil {
		return nil, fmt.Errorf("pull image %q: %w", name, err)
	}
	m, err := st.commit(&Manifest{
		Name:   name,
		Arch:   o.Arch,
		Disk:   diskFile,
		Format: info.Format,
		SHA256: digest,
		Source: o.URL,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("image pulled", "image", name, "bytes", size, "format", info.Format, "sha256", digest)
	return m, nil
}

// normaliseDigest checks a hex SHA-256 and lower-cases it; "" stays "".
func normaliseDigest(s string) (string, error) {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if s == "" {
		return "", nil
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", fmt.Errorf("bad --sha256 %q: want 64 hexadecimal digits", s)
	}
	return s, nil
}

// defaultClient has connection-level timeouts only: a large download may
// take long, the context bounds it as a whole.
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: t}
}
