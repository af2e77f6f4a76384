//go:build !linux

package qemu

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
)

// processCmdline returns the command line of a live process, as ps prints
// it (one string: arguments with spaces cannot be told apart).
func processCmdline(pid int) ([]string, error) {
	out, err := exec.Command("ps", "-ww", "-o", "stat=,args=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return nil, err
	}
	stat, args, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if strings.HasPrefix(stat, "Z") {
		return nil, errors.New("zombie")
	}
	args = strings.TrimSpace(args)
	if args == "" {
		return nil, errors.New("no command line")
	}
	return []string{args}, nil
}
