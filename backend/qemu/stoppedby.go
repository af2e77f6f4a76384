package qemu

// StoppedBy implements vmhost.StoppedByReporter: the stop phase that brought
// the VM down ("agent", "acpi", "quit", "kill"), "guest" when the guest
// powered itself off without being asked, or "" while it runs.
func (c *Controller) StoppedBy() string {
	if by := c.stoppedByPhase(); by != "" {
		return by
	}
	select {
	case <-c.exited:
	default:
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shutdownReason == "guest-shutdown" {
		return "guest"
	}
	return ""
}
