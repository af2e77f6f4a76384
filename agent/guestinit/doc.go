// Package guestinit is what mb-agent does when it runs as PID 1 of the
// mini image: the init role. It prepares the guest, starts the agent role
// as a child process, reaps orphans and shuts the guest down cleanly.
//
// # Boot
//
// Run mounts /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /tmp and
// /run; loads the kernel modules listed in /etc/modules.order (one path per
// line, relative to /lib/modules/<release>, dependencies before
// dependents, written by scripts/mkimage-mini.sh from modules.dep); brings
// up lo and the first ethernet interface, with DHCP (busybox udhcpc) first
// and the user-mode network's fixed 10.0.2.15/24, gateway 10.0.2.2 and DNS
// 10.0.2.3 as the fallback; sets the hostname from mb.hostname= on the
// kernel command line (default "mb", also used when the value is not a
// valid hostname), with /etc/hostname and a 127.0.1.1 line in /etc/hosts;
// opens the power button; then starts the agent role as a child
// (/proc/self/exe --role=agent with MB_AGENT_PID1=1 in its environment) and
// restarts it, with backoff, whenever it exits. PID 1 itself never exits.
//
// The agent runs as a child, not inside PID 1, because PID 1 must reap
// every orphan with wait4(-1), and such a reaper would steal the exit
// statuses os/exec waits for in the agent (guest-exec of `exit 7` would
// report a lost status instead of 7).
//
// # Console lines
//
// These lines on /dev/console (the serial console) are a stable interface:
//
//	mb-agent: ready
//	    printed exactly once, when init is done and the agent child is started.
//	mb-agent: power off (reason: REASON)
//	mb-agent: reboot (reason: REASON)
//	mb-agent: halt (reason: REASON)
//	    printed when a clean shutdown begins. REASON is one of "acpi button",
//	    "signal SIGTERM" (and the other signals), "selftest".
//
// # Signals to PID 1
//
// The agent child (package agent, for guest-shutdown) and the /sbin/poweroff,
// /sbin/reboot and /sbin/halt scripts of the mini image ask PID 1 to stop
// the guest with signals:
//
//	SIGTERM  power off   (SIGUSR2 too, as busybox poweroff sends it)
//	SIGINT   reboot      (also what the kernel sends on Ctrl-Alt-Del)
//	SIGUSR1  halt
//
// The ACPI power button (an evdev KEY_POWER press from any input device that
// has that key, such as the ACPI "Power Button" device) powers off. The
// button is watched from before the ready line on, so a press after the
// ready line is never lost; a press earlier in the boot may be.
//
// A clean shutdown sends SIGTERM to every process (kill -1), waits up to 3
// seconds for them to exit, sends SIGKILL to what is left, syncs, unmounts
// the pseudo filesystems and calls reboot(2) with the chosen command.
//
// # Test hooks
//
// The kernel command line may carry mb.selftest=:
//
//	mb.selftest=poweroff  right after the ready line, shut down cleanly and
//	                      power off (a guest-initiated poweroff)
//	mb.selftest=panic     right after the ready line, crash the kernel
//	                      (echo c > /proc/sysrq-trigger), for pvpanic tests
//
// # Reporters
//
// mb.register=URL and mb.heartbeat=HOST[:PORT] on the kernel command line
// start mb-agent register (the interface is the one init configured) and
// mb-agent heartbeat -b as further children of PID 1 (see
// [Cmdline.Reporters] for their other parameters). A reporter that fails
// or is killed is restarted with the agent's backoff; one that exits 0,
// having been asked to stop with SIGTERM, stays stopped.
//
// When mb-agent is not PID 1 none of this runs: it is an ordinary agent
// service of the distribution's own init.
//
// The init role is Linux-only. Elsewhere the package still builds, for its
// portable parts (command line, modules.dep and input event parsing), and
// Run only reports that PID 1 needs a Linux guest and exits.
package guestinit
