//go:build !linux

package agent

import "errors"

var errNotLinux = errors.New("only a Linux guest can do this")

func setClock(int64) error     { return errNotLinux }
func setHostname(string) error { return errNotLinux }
func mixEntropy([]byte) error  { return errNotLinux }
