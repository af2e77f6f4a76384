//go:build !linux

package vmhost

// ioctlInq asks a socket how many bytes wait unread: FIONREAD of
// <sys/filio.h> on macOS and the BSDs, _IOR('f', 127, int), which
// golang.org/x/sys/unix does not define.
const ioctlInq = 0x4004667f
