package qemu

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
)

// processCmdline returns the arguments of a live process. A process that
// is gone, or a zombie, is an error.
func processCmdline(pid int) ([]string, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return nil, errors.New("zombie")
	}
	b, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("no command line")
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}
