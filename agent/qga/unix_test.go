package qga_test

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qga"
)

// AgentInfoView lets tests name the type Watcher.Info returns.
type agentInfoView = qga.AgentInfo

func mkfifo(path string) error { return unix.Mkfifo(path, 0o600) }

func openRDWR(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }
