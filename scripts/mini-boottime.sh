#!/usr/bin/env bash
# mini-boottime.sh measures how long a bare QEMU boot of the mini image
# takes to print its ready line, under TCG, several times, and prints each
# run and the median. The guest powers itself off after the ready line
# (mb.selftest=poweroff), so runs never overlap.
#
#   scripts/mini-boottime.sh [RUNS] [IMAGE_DIR]     (default 5, $MB_HOME/images/mini)
#
# QEMU_EXTRA adds QEMU arguments (e.g. QEMU_EXTRA="-bios /usr/share/qemu/qboot.rom"),
# CMDLINE_EXTRA kernel parameters.
set -euo pipefail
RUNS=${1:-5}
IMG=${2:-${MB_HOME:-$HOME/.mb}/images/mini}
[ -f "$IMG/image.yaml" ] || { echo "mini-boottime: no image in $IMG (run make image)" >&2; exit 1; }
cmdline=$(sed -n 's/^cmdline: "\(.*\)"$/\1/p' "$IMG/image.yaml")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
times=()
for i in $(seq "$RUNS"); do
	log=$dir/serial-$i.log
	: >"$log"
	start=$(date +%s%N)
	qemu-system-x86_64 -machine q35 -accel tcg -m 256 -smp 1 -nodefaults -no-user-config \
		-nographic -monitor none -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
		-append "$cmdline ${CMDLINE_EXTRA:-} mb.selftest=poweroff" -serial "file:$log" -device pvpanic-pci \
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= \
		-device virtio-serial-pci -device virtio-rng-pci ${QEMU_EXTRA:-} &
	pid=$!
	ready=""
	while kill -0 "$pid" 2>/dev/null; do
		if [ -z "$ready" ] && grep -q 'mb-agent: ready' "$log"; then
			ready=$(( ($(date +%s%N) - start) / 1000000 ))
		fi
		sleep 0.01
	done
	wait "$pid" || { echo "mini-boottime: qemu failed in run $i" >&2; exit 1; }
	[ -n "$ready" ] || ready=$(( ($(date +%s%N) - start) / 1000000 ))
	grep -q 'mb-agent: ready' "$log" || { echo "mini-boottime: no ready line in run $i:" >&2; cat "$log" >&2; exit 1; }
	echo "run $i: ready after ${ready} ms"
	times+=("$ready")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
min=$(printf '%s\n' "${times[@]}" | sort -n | head -n 1)
echo "median: ${median} ms, min ${min} ms over $RUNS runs (tcg, bare qemu, $(nproc) host cpus, load $(cut -d' ' -f1 /proc/loadavg))"
