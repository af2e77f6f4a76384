// Package applevirt is mb's Apple Virtualization framework backend (macOS).
//
// The package is split the way vfkit splits pkg/config from pkg/vf: almost
// everything is plain Go built and tested on every OS (the VM configuration
// derived from the spec and its validation, the controller with its stop
// phases, the vsock port relay, the DHCP lease lookup, the entitlement
// check), written against the small machine interface. One file, built only
// with darwin and cgo, implements machine with github.com/Code-Hex/vz/v3 and
// is the only file that imports it; elsewhere newMachine fails with an error
// saying the backend needs macOS.
//
// The VM runs inside the vmhost process: when vmhost dies, the VM dies with
// it (there is no separate hypervisor process to leak).
package applevirt
