package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// agentArchs are the architectures /download serves.
var agentArchs = []string{"amd64", "arm64"}

// agentFiles finds the mb-agent binaries and caches their checksums.
type agentFiles struct {
	dir string
	mu  sync.Mutex
	sum map[string]agentSum // by path
}

type agentSum struct {
	size  int64
	mtime time.Time
	hex   string
}

// path is the binary for linux/arch: mb-agent-linux-ARCH in the directory,
// or mb-agent itself for the host's own architecture on Linux.
func (a *agentFiles) path(arch string) (string, bool) {
	p := filepath.Join(a.dir, "mb-agent-linux-"+arch)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p, true
	}
	if runtime.GOOS == "linux" && arch == runtime.GOARCH {
		p = filepath.Join(a.dir, "mb-agent")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, true
		}
	}
	return "", false
}

// checksum is the sha256 of a binary, recomputed when it changed.
func (a *agentFiles) checksum(arch string) string {
	p, ok := a.path(arch)
	if !ok {
		return ""
	}
	fi, err := os.Stat(p)
	if err != nil {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sum[p]; ok && s.size == fi.Size() && s.mtime.Equal(fi.ModTime()) {
		return s.hex
	}
	fh, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return ""
	}
	if a.sum == nil {
		a.sum = map[string]agentSum{}
	}
	s := agentSum{size: fi.Size(), mtime: fi.ModTime(), hex: hex.EncodeToString(h.Sum(nil))}
	a.sum[p] = s
	return s.hex
}

func (f *Fleet) download(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	arch, ok := strings.CutPrefix(name, "mb-agent-linux-")
	if !ok || !contains(agentArchs, arch) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such download %q (mb-agent-linux-amd64 or mb-agent-linux-arm64)", name))
		return
	}
	p, ok := f.agents.path(arch)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("this monitor has no mb-agent for linux/%s: put mb-agent-linux-%s next to mb", arch, arch))
		return
	}
	fh, err := os.Open(p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot read the mb-agent binary")
		return
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot read the mb-agent binary")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), fh)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// safeHost accepts a Host header that can go into a shell script as is.
func safeHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return false
		}
	}
	return true
}

func (f *Fleet) installScript(w http.ResponseWriter, r *http.Request) {
	if !safeHost(r.Host) {
		writeError(w, http.StatusBadRequest, "ask for install.sh by the monitor's host name or address")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	hbHost := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		hbHost = h
	}
	hbHost = strings.Trim(hbHost, "[]")
	hbPort := ""
	if a, ok := f.HeartbeatAddr().(*net.UDPAddr); ok && a != nil {
		hbPort = strconv.Itoa(a.Port)
	}
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, installHead, scheme+"://"+r.Host, hbHost, hbPort, f.agents.checksum("amd64"), f.agents.checksum("arm64"))
	io.WriteString(w, installBody)
}

// installHead carries the values; installBody is the fixed script.
const installHead = `#!/bin/sh
# Installs mb-agent from an mb monitor and runs it as a systemd service
# that reports back to this monitor.
#   curl -fsSL %[1]s/install.sh | sudo sh -s -- --heartbeat
#   curl -fsSL %[1]s/install.sh | sudo sh -s -- --register --interface eth0
# Options: --register (default) or --heartbeat, --interface IF,
# --interval SECONDS (default 30), --token TOKEN (register_token).
# The binary's sha256 is checked against the one below.
set -eu
BASE='%[1]s'
HB_HOST='%[2]s'
HB_PORT='%[3]s'
SHA_amd64='%[4]s'
SHA_arm64='%[5]s'
`

const installBody = `ROOT="${MB_INSTALL_ROOT:-}"
mode=register iface= interval=30 token=
die() { echo "install.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
	case "$1" in
	--register) mode=register ;;
	--heartbeat) mode=heartbeat ;;
	--interface) [ $# -ge 2 ] || die "--interface needs a value"; iface=$2; shift ;;
	--interval) [ $# -ge 2 ] || die "--interval needs a value"; interval=$2; shift ;;
	--token) [ $# -ge 2 ] || die "--token needs a value"; token=$2; shift ;;
	*) echo "install.sh: unknown option $1 (use --register or --heartbeat, --interface IF, --interval SECONDS, --token TOKEN)" >&2; exit 2 ;;
	esac
	shift
done
case "$interval" in ''|*[!0-9]*) die "--interval takes whole seconds, not $interval" ;; esac
case "$iface$token" in *[!A-Za-z0-9._:@/+=-]*) die "--interface and --token take letters, digits and ._:@/+=- only" ;; esac
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then die "run as root: curl -fsSL $BASE/install.sh | sudo sh -s -- --$mode"; fi
case "$(uname -m)" in
x86_64|amd64) arch=amd64 sum=$SHA_amd64 ;;
aarch64|arm64) arch=arm64 sum=$SHA_arm64 ;;
*) die "no mb-agent for $(uname -m) (amd64 and arm64 only)" ;;
esac
[ -n "$sum" ] || die "this monitor has no mb-agent for linux/$arch"
if [ "$mode" = heartbeat ] && [ -z "$HB_PORT" ]; then die "this monitor does not receive heartbeats (no heartbeat_listen in its monitor.yaml): use --register"; fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
url="$BASE/download/mb-agent-linux-$arch"
if command -v curl >/dev/null 2>&1; then
	curl -fsSL -o "$tmp" "$url" || die "cannot download $url"
else
	wget -qO "$tmp" "$url" || die "cannot download $url"
fi
got=$(sha256sum "$tmp" | cut -d' ' -f1)
[ "$got" = "$sum" ] || die "checksum mismatch for $url: got $got, want $sum; nothing installed"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" "$ROOT/etc/mb-agent"
install -m 0755 "$tmp" "$ROOT/usr/local/bin/mb-agent"
unit="$ROOT/etc/systemd/system/mb-agent-fleet.service"
if [ "$mode" = register ]; then
	if [ -z "$iface" ]; then
		iface=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
		[ -n "$iface" ] || die "cannot find the default route's interface: give --interface IF"
	fi
	cmd="/usr/local/bin/mb-agent register --api $BASE --interface $iface --interval $interval"
	[ -z "$token" ] || cmd="$cmd --token $token"
else
	printf '{"hb_port": %s, "interval": %s}\n' "$HB_PORT" "$interval" > "$ROOT/etc/mb-agent/hbc.json"
	cmd="/usr/local/bin/mb-agent heartbeat -b -c /etc/mb-agent/hbc.json $HB_HOST"
fi
umask 077
cat > "$unit" <<EOF
[Unit]
Description=mb-agent reporting to the mb monitor at $BASE
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$cmd
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload
	systemctl enable --now mb-agent-fleet.service
fi
echo "install.sh: mb-agent installed ($mode mode, linux/$arch), reporting to $BASE"
`
