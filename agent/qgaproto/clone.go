package qgaproto

// CloneCommand is mb's extension that tells a guest restored as a clone
// who it is now: its hostname, and fresh entropy for the kernel's random
// pool, so that two clones of one snapshot never share the keys or UUIDs
// they generate afterwards.
const CloneCommand = "mb-clone"

// CloneArgs are the arguments of CloneCommand.
type CloneArgs struct {
	Hostname string `json:"hostname"`
	// Entropy is mixed into the guest's random pool (base64 in JSON).
	Entropy []byte `json:"entropy,omitempty"`
}
