package vmhost

import "time"

// SetConnLimits lowers a server's connection limits for a test; call it
// before Run.
func SetConnLimits(s *Server, maxConns int, idle, read time.Duration) {
	s.maxConns, s.idleTimeout, s.readTimeout = maxConns, idle, read
}
