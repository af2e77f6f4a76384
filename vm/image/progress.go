package image

import (
	"io"
	"os"

	"github.com/mattn/go-isatty"
	"golang.org/x/sys/unix"
)

// TerminalProgress returns f when it is a terminal, for a progress bar, and
// nil otherwise, so logs and pipes get no bar.
func TerminalProgress(f *os.File) io.Writer {
	if f != nil && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return f
	}
	return nil
}

// fallbackWidth is the bar width on a terminal that reports none.
const fallbackWidth = 80

// barWidth is the width to force on the bar, or 0 to let the bar size
// itself: a terminal that reports 0 columns (a pty nobody sized) would
// otherwise get an empty bar.
func barWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return fallbackWidth
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return fallbackWidth
	}
	return 0
}
