// Package failtest is mb's failure suite: Go tests that drive the real mb
// and vmhost binaries (built once in TestMain) against a short temporary
// $MB_HOME, with the prebuilt mini image linked in, and break things on
// purpose: kill -9 of the daemon, of a vmhost and of QEMU, a simulated host
// crash, a full disk, long start/stop endurance runs and garbage on every
// socket. Each case checks that nothing was lost: VM directories, disks and
// specs intact, no orphan process, and no stale file blocking the next
// command.
//
// Tests that need the mini image or the mb CLI skip when they are missing,
// and fail instead when MB_REQUIRE_VM=1 (as in `make test`). MB_CHAOS=1
// (`make chaos`) lengthens the endurance run on a real VM to 50 cycles.
// Timings are never asserted here; they belong to `make bench`.
package failtest
