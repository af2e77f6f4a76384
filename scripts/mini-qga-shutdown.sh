#!/bin/sh
# /sbin/shutdown of the mini image's qemu-ga variant. qemu-ga 7.2 runs
# `shutdown -P|-r|-H +0 MESSAGE` for guest-shutdown, which busybox lacks;
# busybox poweroff/reboot/halt ask busybox init (PID 1) for a clean stop.
action=poweroff
for a in "$@"; do
	case "$a" in
	-r) action=reboot ;;
	-H) action=halt ;;
	-P | -h) action=poweroff ;;
	esac
done
echo "mb-mini-qga: $action (reason: shutdown $*)" >/dev/console
exec busybox "$action"
