#!/bin/sh
# make demo: boot the mini image with mb, run a command in it, list, stop,
# remove. Uses its own MB_HOME, a fresh private directory it makes with
# mktemp (a fixed name under /tmp could be made first by another user), so
# the user's VMs are never touched; MB_DEMO_HOME chooses another.
set -eu
cd "$(dirname "$0")/.."
MB=${MB:-$PWD/bin/mb}
IMAGES=${MB_IMAGES:-${MB_HOME:-$HOME/.mb}/images}
made=
if [ -n "${MB_DEMO_HOME:-}" ]; then
	export MB_HOME=$MB_DEMO_HOME
else
	# /tmp, not $TMPDIR: socket paths must stay short (macOS's TMPDIR is long).
	MB_HOME=$(mktemp -d /tmp/mb-demo.XXXXXX)
	export MB_HOME
	made=$MB_HOME
fi
mkdir -p "$MB_HOME/images"
[ -e "$MB_HOME/images/mini" ] || ln -s "$IMAGES/mini" "$MB_HOME/images/mini"
run() { printf '\n$ %s\n' "$*"; "$@"; }
cleanup() {
	"$MB" rm --force demo >/dev/null 2>&1 || true
	"$MB" daemon stop >/dev/null 2>&1 || true
	[ -z "$made" ] || rm -rf "$made"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
echo "mb demo (MB_HOME=$MB_HOME)"
run "$MB" version
run "$MB" start demo
run "$MB" exec demo -- uname -a
run "$MB" exec demo -- sh -c 'ip -4 addr show eth0 | grep inet'
run "$MB" ls
run "$MB" info demo
run "$MB" stop demo
run "$MB" ls
run "$MB" rm demo
run "$MB" daemon stop
trap - EXIT
[ -z "$made" ] || rm -rf "$made"
echo
echo "demo done: started a VM, ran a command in it, listed, stopped and removed it"
