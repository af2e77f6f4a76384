package image

import (
	"io"
	"os"

	"github.com/mattn/go-isatty"
)

// TerminalProgress returns f when it is a terminal, for a progress bar, and
// nil otherwise, so logs and pipes get no bar.
func TerminalProgress(f *os.File) io.Writer {
	if f != nil && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return f
	}
	return nil
}
