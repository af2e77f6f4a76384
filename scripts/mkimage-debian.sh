#!/bin/sh
# mkimage-debian.sh builds a Debian bookworm test image for mb: a root disk
# (qcow2, made with `mkfs.ext4 -d`, so no loop mount), plus the kernel and
# initrd copied out of it for direct kernel boot with root=/dev/vda.
#
# The guest carries systemd (with dbus, so logind handles guest-shutdown and
# the ACPI power button), openssh-server, cloud-init (NoCloud) and the stock
# qemu-guest-agent.
#
# Output, in $MB_CACHE (default /var/cache/mb-test/debian), outside the repo:
#   disk.qcow2  vmlinuz  initrd.img  image.yaml
# image.yaml is an mb image manifest; `mb image import` or a symlink puts the
# image into $MB_HOME/images/.
#
# Work already done is skipped: a finished image is reused as it is, and a
# finished debootstrap is reused when only the later steps must be redone.
# Set MB_REBUILD=1 to start from scratch. Needs root (debootstrap, chroot and
# ownership of the files inside the disk); installs debootstrap when missing.
set -eu

MB_CACHE=${MB_CACHE:-/var/cache/mb-test/debian}
MIRROR=${MB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
DISK_SIZE=${MB_DEBIAN_DISK_SIZE:-2G}
# Bump RECIPE when the steps below change, so cached images are rebuilt.
RECIPE=4
PACKAGES=systemd,systemd-sysv,dbus,libpam-systemd,udev,openssh-server,sudo,cloud-init,python3-cffi-backend,qemu-guest-agent,linux-image-cloud-amd64,initramfs-tools,iproute2,netbase,ca-certificates
CMDLINE="root=/dev/vda rw console=ttyS0 net.ifnames=0"

log() { printf 'mkimage-debian: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and chroot): run it with sudo"
[ "$(uname -m)" = x86_64 ] || die "builds an amd64 image; this host is $(uname -m)"

rootfs=$MB_CACHE/rootfs
done_stamp=$MB_CACHE/.done-recipe-$RECIPE

if [ "${MB_REBUILD:-0}" = 1 ]; then
	log "MB_REBUILD=1: removing $MB_CACHE"
	rm -rf "$MB_CACHE"
fi
if [ -e "$done_stamp" ] && [ -e "$MB_CACHE/disk.qcow2" ]; then
	log "image already built in $MB_CACHE (MB_REBUILD=1 rebuilds it)"
	exit 0
fi
mkdir -p "$MB_CACHE"

need() { # need COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2 (for $1)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2 ||
		die "could not install $2: run apt-get update, then apt-get install $2"
}
need debootstrap debootstrap
need mkfs.ext4 e2fsprogs
need qemu-img qemu-utils

# Step 1: debootstrap. --variant=minbase does not resolve virtual
# dependencies, hence python3-cffi-backend and initramfs-tools by name.
if [ ! -e "$rootfs/.mb-debootstrap-done" ]; then
	log "debootstrap $SUITE into $rootfs (takes several minutes)"
	rm -rf "$rootfs"
	debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >&2 ||
		die "debootstrap failed; see $rootfs/debootstrap/debootstrap.log"
	touch "$rootfs/.mb-debootstrap-done"
fi

# Step 2: configure the guest (cheap, always redone before a new disk).
log "configuring the guest"
printf '/dev/vda / ext4 defaults,discard 0 1\n' >"$rootfs/etc/fstab"
printf 'debian\n' >"$rootfs/etc/hostname"
# An empty machine-id makes systemd create a fresh one on each VM's first boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# cloud-init sets the host key from the seed; no image-wide host keys.
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/cloud/cloud.cfg.d"
cat >"$rootfs/etc/cloud/cloud.cfg.d/90-mb.cfg" <<'CFG'
# mb: only the NoCloud seed ISO, no network metadata probing.
datasource_list: [ NoCloud, None ]
# minbase has no locales package (no update-locale): leave the locale alone.
locale: false
CFG
# Networking: systemd-networkd (cloud-init renders to it), with a DHCP
# fallback for boots without a seed.
mkdir -p "$rootfs/etc/systemd/network"
cat >"$rootfs/etc/systemd/network/99-mb-dhcp.network" <<'NET'
[Match]
Name=eth* en*

[Network]
DHCP=yes
NET
chroot "$rootfs" systemctl enable systemd-networkd.service >/dev/null 2>&1 ||
	die "could not enable systemd-networkd in $rootfs"
chroot "$rootfs" passwd -l root >/dev/null
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

# Step 3: kernel and initrd for direct kernel boot.
kernel=$(ls "$rootfs"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || die "no kernel in $rootfs/boot: did linux-image-cloud-amd64 install?"
initrd=$rootfs/boot/initrd.img-${kernel##*/vmlinuz-}
[ -e "$initrd" ] || die "no initrd $initrd: did initramfs-tools run?"
cp "$kernel" "$MB_CACHE/vmlinuz.tmp" && mv "$MB_CACHE/vmlinuz.tmp" "$MB_CACHE/vmlinuz"
cp "$initrd" "$MB_CACHE/initrd.img.tmp" && mv "$MB_CACHE/initrd.img.tmp" "$MB_CACHE/initrd.img"

# Step 4: the disk, from the directory tree (no loop mount), then qcow2.
if grep -q " $rootfs/" /proc/mounts; then
	die "something is still mounted under $rootfs (see /proc/mounts); unmount it first"
fi
log "making the ext4 disk ($DISK_SIZE)"
rm -f "$MB_CACHE/disk.raw" "$MB_CACHE/disk.qcow2.tmp"
mkfs.ext4 -q -F -L root -E root_owner=0:0 -d "$rootfs" "$MB_CACHE/disk.raw" "$DISK_SIZE" >&2 ||
	die "mkfs.ext4 -d failed (needs e2fsprogs 1.43 or later)"
qemu-img convert -f raw -O qcow2 "$MB_CACHE/disk.raw" "$MB_CACHE/disk.qcow2.tmp"
rm -f "$MB_CACHE/disk.raw"
mv "$MB_CACHE/disk.qcow2.tmp" "$MB_CACHE/disk.qcow2"

digest=$(sha256sum "$MB_CACHE/disk.qcow2" | cut -d' ' -f1)
cat >"$MB_CACHE/image.yaml.tmp" <<YAML
name: debian
arch: x86_64
kernel: vmlinuz
initrd: initrd.img
cmdline: $CMDLINE
disk: disk.qcow2
format: qcow2
sha256: $digest
agent: qemu-ga
source: debootstrap $SUITE $MIRROR
YAML
mv "$MB_CACHE/image.yaml.tmp" "$MB_CACHE/image.yaml"
rm -f "$MB_CACHE"/.done-recipe-*
touch "$done_stamp"
log "done: $MB_CACHE/disk.qcow2 $MB_CACHE/vmlinuz $MB_CACHE/initrd.img"
