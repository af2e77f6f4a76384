// Package qemu is the QEMU backend of vmhost: a vmhost.VMController that
// runs one qemu-system-* child process per VM, talks to it over QMP
// (<dir>/qmp.sock) and stops it in phases (guest agent, ACPI power button,
// QMP quit, SIGKILL).
//
// The command line is a pure function of the VM spec (see buildArgs), so it
// is table-tested on any host; the parts that touch processes and sockets
// are kept thin around it.
//
// Files in the VM directory:
//
//	qemu.pid     QEMU's PID (-pidfile)
//	qmp.sock     the QMP monitor (used by vmhost only)
//	console.sock the serial console (for `mb console`)
//	serial.log   everything the console printed, appended across restarts;
//	             moved to serial.log.1 once over 4 MiB (checked at start
//	             and every 30 s)
//	agent.sock   the guest agent's virtio-serial port org.qemu.guest_agent.0
//	disk.qcow2   for a disk image: the VM's overlay on the image's base
//	efi-vars.fd  for a UEFI disk boot: the VM's firmware variables
package qemu
