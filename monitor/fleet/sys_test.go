package fleet

import "syscall"

// syscallEMSGSIZE is what a send of an oversized datagram fails with.
const syscallEMSGSIZE = syscall.EMSGSIZE
