#!/bin/sh
# deps.sh PKG... — installs the Debian packages that are missing, with one
# `apt-get update` first, and does nothing when all are present. mb's
# Makefile calls it before building, testing or running the demo.
set -eu

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps: not a Debian-like system; install these yourself: $*" >&2
	echo "deps: (on macOS: brew install qemu socat)" >&2
	exit 0
fi

missing=""
for p in "$@"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "deps: need root to install:$missing (run as root, or install them yourself)" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
