package vmhost

import "golang.org/x/sys/unix"

// ioctlInq asks a socket how many bytes wait unread (FIONREAD).
const ioctlInq = unix.TIOCINQ
