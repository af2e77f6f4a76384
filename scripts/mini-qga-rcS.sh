#!/bin/sh
# System start of the mini image's qemu-ga variant, run by busybox init
# before it starts qemu-ga: the same steps as mb-agent's init role
# (package guestinit), in shell.
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run

rel=$(uname -r)
while read -r m; do
	insmod "/lib/modules/$rel/$m" 2>/dev/null || true
done </etc/modules.order

host=mb
for p in $(cat /proc/cmdline); do
	case "$p" in mb.hostname=*) host=${p#mb.hostname=} ;; esac
done
hostname "$host"

ip link set lo up
iface=""
for t in /sys/class/net/*/type; do
	n=${t%/type}
	n=${n##*/}
	if [ "$n" != lo ] && [ "$(cat "$t")" = 1 ]; then
		iface=$n
		break
	fi
done
if [ -n "$iface" ]; then
	ip link set "$iface" up
	if ! udhcpc -i "$iface" -f -q -n -t 3 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1; then
		ip addr add 10.0.2.15/24 dev "$iface"
		ip route add default via 10.0.2.2 dev "$iface"
		echo "nameserver 10.0.2.3" >/etc/resolv.conf
	fi
fi

# No udev: make the /dev/virtio-ports/NAME links qemu-ga is pointed at.
mkdir -p /dev/virtio-ports
for n in /sys/class/virtio-ports/*/name; do
	[ -f "$n" ] || continue
	port=${n%/name}
	ln -sf "/dev/${port##*/}" "/dev/virtio-ports/$(cat "$n")"
done

echo "mb-mini-qga: ready" >/dev/console
