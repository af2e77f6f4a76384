package daemon

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mbvm/mb/daemon/api"
)

// A spec over 1 MiB is refused with 413 and a short message; it was cut at
// 1 MiB and the truncated spec accepted (here the cut loses "cpus: 4").
func TestCreateBodyTooLarge(t *testing.T) {
	td := startTestDaemon(t, "", nil)
	ctx := stepCtx(t)
	var doc bytes.Buffer
	doc.WriteString("name: big\nbackend: fake\n")
	for doc.Len() < 1200<<10 {
		doc.WriteString("# padding padding padding padding padding padding padding padding\n")
	}
	doc.WriteString("cpus: 4\n")
	_, err := td.c.Create(ctx, doc.Bytes())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge || len(se.Message) > 200 || !strings.Contains(se.Message, "1 MiB") {
		t.Fatalf("create with a 1.2 MB spec: %v; want 413 with a short message naming 1 MiB", err)
	}
	if _, err := td.c.Inspect(ctx, "big"); !api.IsNotFound(err) {
		t.Errorf("after the refused create: %v; want no VM", err)
	}
}
