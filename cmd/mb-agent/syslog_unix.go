//go:build !windows

package main

import (
	"io"
	"log/syslog"
)

// syslogWriter is the daemon's log: syslog's daemon facility.
func syslogWriter() (io.Writer, error) {
	return syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "mb-agent")
}
