package daemon

import (
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// followFile copies path to w, and with follow keeps copying what is
// appended until ctx ends, reopening the file when it is rotated or
// truncated. flush is called after each burst.
func followFile(ctx context.Context, path string, w io.Writer, flush func(), follow bool) error {
	var f *os.File
	var off int64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if f == nil {
			nf, err := os.Open(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err == nil {
				f, off = nf, 0
			} else if !follow {
				return nil
			}
		}
		if f != nil {
			n, err := io.Copy(w, f)
			off += n
			if err != nil {
				return err
			}
			if n > 0 {
				flush()
			}
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if f != nil {
			st, err := os.Stat(path)
			fst, ferr := f.Stat()
			if err != nil || ferr != nil || !os.SameFile(st, fst) || st.Size() < off {
				// Rotated or truncated: start over on the current file.
				f.Close()
				f = nil
			}
		}
	}
}
