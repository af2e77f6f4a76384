#!/usr/bin/env bash
# mkimage-mini.sh builds mb's mini image: Debian's cloud kernel, the virtio
# modules it needs, busybox and mb-agent as /init, packed as vmlinuz +
# initrd.img with an image.yaml manifest. `make image` runs it.
#
#   scripts/mkimage-mini.sh [--out DIR] [--arch x86_64|aarch64] [--agent BIN]
#                           [--cmdline S] [--variant mb-agent|qemu-ga] [--force]
#
#   --out DIR    write the image to DIR (default $MB_HOME/images/mini, or
#                images/mini-qga for the qemu-ga variant; $MB_HOME defaults
#                to ~/.mb)
#   --arch ARCH  target architecture (default: the host's)
#   --agent BIN  use this mb-agent binary instead of building cmd/mb-agent
#   --cmdline S  kernel command line to put in image.yaml; the mb-agent
#                variant reads mb.socktop=ADDR (serve socktop's protocol)
#                and mb.socktop_token=T from it, as from `mb start --cmdline`
#   --variant V  mb-agent (default): mb-agent is PID 1 and the agent.
#                qemu-ga: busybox init as PID 1 and Debian's stock
#                qemu-guest-agent (with its shared libraries) as the agent,
#                for compatibility tests; its ready line is
#                "mb-mini-qga: ready". Native architecture only.
#   --force      rebuild the initrd even when its inputs did not change
#
# Environment: MB_CACHE (default /var/cache/mb, or ~/.cache/mb when that is
# not writable) holds the downloaded packages and the extracted kernel;
# SOURCE_DATE_EPOCH fixes the file times in the initrd (default 1).
#
# The build is reproducible (sorted cpio, fixed times and owners, gzip -n)
# and skips work already done: the kernel package is downloaded and
# extracted once, and the initrd is rebuilt only when the hash of its inputs
# changes. Outputs are written to a temporary file and renamed into place.
set -euo pipefail

say() { printf 'mkimage-mini: %s\n' "$*" >&2; }
die() { printf 'mkimage-mini: error: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=""
ARCH=$(uname -m)
AGENT_BIN=""
CMDLINE=""
VARIANT=mb-agent
FORCE=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift 2 ;;
	--out=*) OUT=${1#*=}; shift ;;
	--arch) ARCH=$2; shift 2 ;;
	--arch=*) ARCH=${1#*=}; shift ;;
	--agent) AGENT_BIN=$2; shift 2 ;;
	--agent=*) AGENT_BIN=${1#*=}; shift ;;
	--cmdline) CMDLINE=$2; shift 2 ;;
	--cmdline=*) CMDLINE=${1#*=}; shift ;;
	--variant) VARIANT=$2; shift 2 ;;
	--variant=*) VARIANT=${1#*=}; shift ;;
	--force) FORCE=1; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

case "$ARCH" in
x86_64 | amd64) ARCH=x86_64 DEBARCH=amd64 GOARCH=amd64 CONSOLE=ttyS0 ;;
aarch64 | arm64) ARCH=aarch64 DEBARCH=arm64 GOARCH=arm64 CONSOLE=ttyAMA0 ;;
*) die "unsupported architecture $ARCH (use x86_64 or aarch64)" ;;
esac
HOSTDEBARCH=$(dpkg --print-architecture)
# quiet: the kernel's boot messages cost seconds on a slow serial console
# under TCG. panic=-1: reboot at once on a panic (after pvpanic reported it).
[ -n "$CMDLINE" ] || CMDLINE="console=$CONSOLE panic=-1 quiet"

case "$VARIANT" in
mb-agent) NAME=mini READY="mb-agent: ready" ;;
qemu-ga)
	NAME=mini-qga READY="mb-mini-qga: ready"
	[ "$DEBARCH" = "$HOSTDEBARCH" ] || die "the qemu-ga variant is built for the host's architecture only"
	;;
*) die "unknown --variant $VARIANT (use mb-agent or qemu-ga)" ;;
esac
if [ -z "$OUT" ]; then
	MBH=${MB_HOME:-$HOME/.mb}
	OUT=$MBH/images/$NAME
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ -z "${MB_CACHE:-}" ]; then
	MB_CACHE=/var/cache/mb
	if ! mkdir -p "$MB_CACHE/pkgs" 2>/dev/null || [ ! -w "$MB_CACHE/pkgs" ]; then
		MB_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mb
	fi
fi
PKGS=$MB_CACHE/pkgs
mkdir -p "$PKGS" "$MB_CACHE/kernel"
# One build at a time per cache, and the image written under the lock mb
# holds while it pulls, imports or removes an image and while a VM is created
# or started from it ($MB_HOME/images/.NAME.lock, flock): parallel test runs
# may all call make image, and a VM must not boot a half-written image.
# Opened for appending: mb records its PID in that file.
if command -v flock >/dev/null; then
	exec 8>"$MB_CACHE/.lock" 9>>"$(dirname "$OUT")/.$(basename "$OUT").lock"
	flock 8
	flock 9
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# Host tools, installed with apt when missing.
need=()
hostpkgs=(busybox-static cpio)
[ "$VARIANT" = qemu-ga ] && hostpkgs+=(qemu-guest-agent)
for p in "${hostpkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]} with apt-get"
	if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
		$SUDO apt-get update -qq
	fi
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for t in dpkg-deb gzip sha256sum cpio go; do
	command -v "$t" >/dev/null || die "$t not found in PATH (install it: apt-get install dpkg gzip coreutils cpio golang)"
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. The kernel package, downloaded once into the cache.
meta=linux-image-cloud-$DEBARCH
KPKG=$(apt-cache depends "$meta:$DEBARCH" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}' || true)
KPKG=${KPKG%:*}
DEB=""
if [ -n "$KPKG" ]; then
	KVERSION=$(apt-cache policy "$KPKG:$DEBARCH" 2>/dev/null | awk '/Candidate:/{print $2; exit}')
	DEB=$PKGS/${KPKG}_${KVERSION//:/%3a}_${DEBARCH}.deb
	if [ -s "$DEB" ]; then
		say "kernel package $KPKG $KVERSION: cached in $PKGS"
	else
		say "downloading $KPKG $KVERSION into $PKGS"
		aptopts=()
		[ "$(id -u)" = 0 ] && aptopts+=(-o APT::Sandbox::User=root)
		(cd "$WORK" && apt-get download -qq "${aptopts[@]}" "$KPKG:$DEBARCH") ||
			die "apt-get download $KPKG failed (check the network and /etc/apt/sources.list)"
		mv "$WORK/"*.deb "$DEB.tmp" && mv "$DEB.tmp" "$DEB"
	fi
else
	# Offline, or apt does not know the architecture: use the newest cached package.
	DEB=$(ls "$PKGS"/linux-image-*-cloud-"${DEBARCH}"_*_"${DEBARCH}".deb 2>/dev/null | sort -V | tail -n 1 || true)
	[ -n "$DEB" ] || die "apt knows no $meta and $PKGS has no kernel package (run apt-get update; for another architecture: dpkg --add-architecture $DEBARCH && apt-get update)"
	KPKG=$(basename "$DEB" | cut -d_ -f1)
	say "apt knows no $meta; using the cached $(basename "$DEB")"
fi
KVER=${KPKG#linux-image-}

# 2. The kernel and its module tree, extracted once, decompressed, with a
#    modules.dep (Debian leaves that to depmod at install time).
KDIR=$MB_CACHE/kernel/$(basename "$DEB" .deb)
if [ -f "$KDIR/.complete" ]; then
	say "kernel $KVER: extracted in $KDIR"
else
	say "extracting $(basename "$DEB") into $KDIR"
	x=$WORK/kx
	dpkg-deb -x "$DEB" "$x"
	kt=$WORK/ktree
	mkdir -p "$kt"
	cp "$x/boot/vmlinuz-$KVER" "$kt/vmlinuz"
	mods=$x/lib/modules/$KVER
	[ -d "$mods" ] || mods=$x/usr/lib/modules/$KVER
	[ -d "$mods" ] || die "$(basename "$DEB") has no lib/modules/$KVER"
	mv "$mods" "$kt/modules"
	find "$kt/modules" -name '*.ko.xz' -exec xz -d {} + 2>/dev/null || true
	find "$kt/modules" -name '*.ko.zst' -exec zstd -q -d --rm {} + 2>/dev/null || true
	find "$kt/modules" -name '*.ko.gz' -exec gzip -d {} + 2>/dev/null || true
	if find "$kt/modules" -name '*.ko.*' | grep -q .; then
		die "compressed modules left in $(basename "$DEB") (install xz-utils and zstd)"
	fi
	(cd "$REPO" && go run ./scripts/mini-modorder -tree "$kt/modules") >/dev/null
	touch "$kt/.complete"
	rm -rf "$KDIR.tmp"
	mv "$kt" "$KDIR.tmp"
	mv -T "$KDIR.tmp" "$KDIR"
fi

# 3. The modules the guest loads, dependencies first.
# "?" marks modules taken only when the kernel has them.
WANTED=(virtio_pci virtio_console virtio_net virtio_rng virtio_blk button evdev
	pvpanic_pci pvpanic_mmio vmw_vsock_virtio_transport '?virtiofs')
# arm64 without ACPI firmware reports the power button through gpio-keys.
[ "$ARCH" = aarch64 ] && WANTED+=('?virtio_mmio' '?gpio_keys')
(cd "$REPO" && go run ./scripts/mini-modorder -tree "$KDIR/modules" "${WANTED[@]}") >"$WORK/modules.order"
say "modules: $(wc -l <"$WORK/modules.order") ($(xargs -n1 basename <"$WORK/modules.order" | sed 's/\.ko$//' | tr '\n' ' '))"

# 4. mb-agent, static (or, for the qemu-ga variant, Debian's qemu-ga and
#    the shared libraries ldd finds for it).
if [ "$VARIANT" = qemu-ga ]; then
	AGENT_BIN=/usr/sbin/qemu-ga
	ldd "$AGENT_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | LC_ALL=C sort -u >"$WORK/libs"
	grep -q . "$WORK/libs" || die "ldd found no libraries for $AGENT_BIN"
	if ldd "$AGENT_BIN" | grep -q 'not found'; then
		die "qemu-ga's libraries are missing: $(ldd "$AGENT_BIN" | grep 'not found' | tr -s ' \t\n' ' ') (apt-get install --reinstall qemu-guest-agent)"
	fi
	AGENTVERSION=$(dpkg-query -W -f='${Version}' qemu-guest-agent)
	say "agent: qemu-ga $AGENTVERSION with $(wc -l <"$WORK/libs") shared libraries"
elif [ -z "$AGENT_BIN" ]; then
	say "building mb-agent for linux/$GOARCH"
	(cd "$REPO" && CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath -buildvcs=false \
		-tags nethttpomithttp2 -ldflags='-s -w' -o "$WORK/mb-agent" ./cmd/mb-agent) ||
		die "building cmd/mb-agent failed"
	AGENT_BIN=$WORK/mb-agent
fi
[ -x "$AGENT_BIN" ] || die "mb-agent binary $AGENT_BIN is missing or not executable"

# 5. busybox, static, for the target architecture.
if [ "$DEBARCH" = "$HOSTDEBARCH" ]; then
	BUSYBOX=/bin/busybox
	BBVERSION=$(dpkg-query -W -f='${Version}' busybox-static)
	"$BUSYBOX" --list-full | LC_ALL=C sort >"$WORK/applets"
else
	bdeb=$(ls "$PKGS"/busybox-static_*_"$DEBARCH".deb 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$bdeb" ]; then
		(cd "$PKGS" && apt-get download -qq "busybox-static:$DEBARCH") ||
			die "apt-get download busybox-static:$DEBARCH failed (dpkg --add-architecture $DEBARCH && apt-get update)"
		bdeb=$(ls "$PKGS"/busybox-static_*_"$DEBARCH".deb | sort -V | tail -n 1)
	fi
	dpkg-deb -x "$bdeb" "$WORK/bb"
	BUSYBOX=$WORK/bb/bin/busybox
	BBVERSION=$(basename "$bdeb" | cut -d_ -f2)
	printf '%s\n' bin/sh bin/ash bin/cat bin/ls bin/mkdir bin/mount bin/ps bin/rm bin/sleep \
		bin/dmesg bin/ip bin/kill bin/ln bin/cp bin/mv bin/echo bin/grep bin/sed \
		sbin/udhcpc usr/bin/nc usr/sbin/httpd usr/bin/wget usr/bin/top usr/bin/free >"$WORK/applets"
fi
[ -x "$BUSYBOX" ] || die "busybox binary $BUSYBOX not found (apt-get install busybox-static)"

# newc_entry NAME MODE RDEVMAJOR RDEVMINOR INO writes one empty newc cpio
# member (a directory, device node or the trailer).
newc_entry() {
	local name=$1 mode=$(($2)) ns=$((${#1} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		"$5" "$mode" 0 0 1 "$SOURCE_DATE_EPOCH" 0 0 0 "$3" "$4" "$ns" 0
	printf '%s\0' "$name"
	head -c $(((4 - (110 + ns) % 4) % 4)) /dev/zero
}

# 6. The initrd, rebuilt only when its inputs changed.
INPUTS=$( {
	echo "format 1 arch $ARCH epoch $SOURCE_DATE_EPOCH"
	echo "variant $VARIANT"
	sha256sum "$0" "$REPO"/scripts/mini-udhcpc.script "$REPO"/scripts/mini-shutdown.sh \
		"$REPO"/scripts/mini-qga-* "$AGENT_BIN" "$BUSYBOX" "$KDIR/vmlinuz" | cut -d' ' -f1
	[ "$VARIANT" = qemu-ga ] && xargs sha256sum <"$WORK/libs"
	cat "$WORK/modules.order" "$WORK/applets"
	(cd "$KDIR/modules" && sha256sum $(cat "$WORK/modules.order"))
} | sha256sum | cut -d' ' -f1)
STAMP=$OUT/.initrd.inputs
if [ "$FORCE" = 0 ] && [ -s "$OUT/initrd.img" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$INPUTS" ]; then
	say "initrd.img: up to date (inputs $INPUTS)"
else
	R=$WORK/root
	mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,run,var/tmp,lib/modules/"$KVER"}
	install -m 0755 "$BUSYBOX" "$R/bin/busybox"
	if [ "$VARIANT" = qemu-ga ]; then
		# busybox init as PID 1; its own poweroff/reboot/halt signal it.
		ln -s /bin/busybox "$R/init"
		skip='^(bin/busybox|linuxrc)$'
		install -m 0755 "$AGENT_BIN" "$R/usr/sbin/qemu-ga"
		while read -r lib; do
			mkdir -p "$R$(dirname "$lib")"
			cp -L "$lib" "$R$lib"
			chmod 0755 "$R$lib"
		done <"$WORK/libs"
		mkdir -p "$R/etc/init.d" "$R/var/lib" "$R/var"
		ln -s /run "$R/var/run"
		install -m 0644 "$REPO/scripts/mini-qga-inittab" "$R/etc/inittab"
		install -m 0755 "$REPO/scripts/mini-qga-rcS.sh" "$R/etc/init.d/rcS"
		install -m 0755 "$REPO/scripts/mini-qga-shutdown.sh" "$R/sbin/shutdown"
	else
		install -m 0755 "$AGENT_BIN" "$R/init"
		# On PATH too, for `mb-agent send` and `mb-agent socktop` in the guest.
		ln -s /init "$R/usr/bin/mb-agent"
		skip='^(bin/busybox|linuxrc|.*/(poweroff|reboot|halt|init))$'
		for c in poweroff reboot halt; do
			install -m 0755 "$REPO/scripts/mini-shutdown.sh" "$R/sbin/$c"
		done
	fi
	while read -r a; do
		[[ $a =~ $skip ]] && continue
		mkdir -p "$R/$(dirname "$a")"
		[ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
	done <"$WORK/applets"
	while read -r m; do
		mkdir -p "$R/lib/modules/$KVER/$(dirname "$m")"
		install -m 0644 "$KDIR/modules/$m" "$R/lib/modules/$KVER/$m"
	done <"$WORK/modules.order"
	# modules.dep of the modules that are there, for busybox modprobe.
	grep -F -f <(sed 's/$/:/' "$WORK/modules.order") "$KDIR/modules/modules.dep" >"$R/lib/modules/$KVER/modules.dep" || true
	install -m 0644 "$WORK/modules.order" "$R/etc/modules.order"
	install -m 0755 "$REPO/scripts/mini-udhcpc.script" "$R/etc/udhcpc.script"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
	printf 'root:x:0:\ntty:x:5:\n' >"$R/etc/group"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$R/etc/hosts"
	printf 'nameserver 10.0.2.3\n' >"$R/etc/resolv.conf"
	cat >"$R/etc/os-release" <<-EOF
		PRETTY_NAME="mb mini (Debian kernel $KVER)"
		NAME="mb mini"
		ID=mb-mini
		ID_LIKE=debian
		VERSION_ID="1"
		HOME_URL="https://github.com/mbvm/mb"
	EOF
	chmod 0644 "$R"/etc/{passwd,group,hosts,resolv.conf,os-release}
	chmod 1777 "$R/tmp" "$R/var/tmp"
	chmod 0700 "$R/root"
	find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	# A first archive with /dev/console, so PID 1 has the console on its
	# stdio from the start (making the node in the staging tree would need
	# root), then the tree; the kernel unpacks both from one gzip stream.
	{
		newc_entry dev 040755 0 0 1
		newc_entry dev/console 020600 5 1 2
		newc_entry TRAILER!!! 0 0 0 0
		(cd "$R" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
			cpio --null --create --format=newc --owner=0:0 --reproducible --quiet)
	} | gzip -n -6 >"$OUT/.initrd.img.tmp"
	mv "$OUT/.initrd.img.tmp" "$OUT/initrd.img"
	echo "$INPUTS" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
	say "initrd.img: built, $(du -k "$OUT/initrd.img" | cut -f1) KiB, sha256 $(sha256sum "$OUT/initrd.img" | cut -c1-16)…"
fi

# 7. The kernel and the manifest.
if ! cmp -s "$KDIR/vmlinuz" "$OUT/vmlinuz"; then
	cp "$KDIR/vmlinuz" "$OUT/.vmlinuz.tmp" && mv "$OUT/.vmlinuz.tmp" "$OUT/vmlinuz"
	say "vmlinuz: copied ($KVER)"
fi
cat >"$OUT/.image.yaml.tmp" <<EOF
# Written by scripts/mkimage-mini.sh; rebuild with make image.
name: $NAME
arch: $ARCH
kernel: vmlinuz
initrd: initrd.img
cmdline: "$CMDLINE"
ready_line: "$READY"
agent: $([ "$VARIANT" = qemu-ga ] && echo qemu-ga || echo mb-agent)
source: "debian $(basename "$DEB" .deb), busybox-static $BBVERSION$([ "$VARIANT" = qemu-ga ] && echo ", qemu-guest-agent $AGENTVERSION")"
EOF
mv "$OUT/.image.yaml.tmp" "$OUT/image.yaml"
say "image ready in $OUT"
