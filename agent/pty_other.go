//go:build !linux

package agent

import (
	"errors"
	"os"

	"github.com/mbvm/mb/agent/qgaproto"
)

var errNoPty = errors.New("pseudo-terminals are supported on Linux guests only")

func openPty(qgaproto.WinSize) (*os.File, *os.File, error) { return nil, nil, errNoPty }

func setWinSize(*os.File, qgaproto.WinSize) error { return errNoPty }
