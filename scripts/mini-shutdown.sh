#!/bin/sh
# poweroff, reboot and halt of the mb mini image. PID 1 is mb-agent's init
# (package guestinit), which takes SIGTERM to power off, SIGINT to reboot
# and SIGUSR1 to halt, then stops every process cleanly. busybox's own
# applets would send other signals (reboot sends SIGTERM), so these replace
# them. -f skips init and calls reboot(2) at once, as with busybox.
case "${0##*/}" in
reboot) sig=INT ;;
halt) sig=USR1 ;;
*) sig=TERM ;;
esac
for a in "$@"; do
	if [ "$a" = "-f" ]; then
		exec busybox "${0##*/}" -f
	fi
done
exec kill -"$sig" 1
