package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vmhost"
)

// handleExecStream answers POST /v1/vms/{name}/exec/stream: it opens a
// streamed exec on the VM's vmhost, switches the connection to the
// mb-exec-stream protocol and relays the frames both ways (they are
// vmhost's StreamFrame lines, checked there). Either side hanging up ends
// both; a client that hangs up first gets the command killed.
func (d *Daemon) handleExecStream(w http.ResponseWriter, r *http.Request, v *vm) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.StreamUpgrade) {
		writeJSON(w, http.StatusBadRequest, api.Error{Code: api.CodeBadRequest,
			Error: fmt.Sprintf(`exec/stream needs the headers "Connection: Upgrade" and "Upgrade: %s"; for a one-shot JSON reply use POST /v1/vms/%s/exec`, api.StreamUpgrade, v.name)})
		return
	}
	var req api.ExecStreamRequest
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, api.Error{Code: api.CodeBadRequest,
			Error: fmt.Sprintf(`bad exec/stream body: %v (fields: argv, env, tty, rows, cols; for example {"argv":["sh"],"tty":true,"rows":24,"cols":80})`, err)})
		return
	}
	switch {
	case len(req.Argv) == 0 || req.Argv[0] == "":
		writeJSON(w, http.StatusBadRequest, api.Error{Code: api.CodeBadRequest, Error: `exec/stream needs "argv": the program to run and its arguments, for example {"argv":["uname","-a"]}`})
		return
	case req.TTY && (req.Rows == 0 || req.Cols == 0):
		writeJSON(w, http.StatusBadRequest, api.Error{Code: api.CodeBadRequest, Error: `exec/stream with "tty" needs "rows" and "cols", the terminal's size`})
		return
	}
	v.mu.Lock()
	m := v.manifest
	v.mu.Unlock()
	if m != nil && m.Agent == "none" {
		writeJSON(w, http.StatusConflict, api.Error{Code: api.CodeNoAgent,
			Error: fmt.Sprintf("VM %s has no guest agent (image %s has agent: none), so exec cannot work: use an image with mb-agent, such as mini, or `mb ssh`", v.name, m.Name)})
		return
	}
	if v.current() == nil {
		writeJSON(w, http.StatusConflict, api.Error{Code: api.CodeNotRunning,
			Error: fmt.Sprintf("VM %s is not running: start it with `mb start %s` first", v.name, v.name)})
		return
	}
	vconn, err := vmhost.NewClient(v.socket()).ExecStream(r.Context(), vmhost.Request{Argv: req.Argv, Env: req.Env, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols})
	if err != nil {
		writeJSON(w, http.StatusBadGateway, api.Error{Code: api.CodeVMHostFailed, Error: fmt.Sprintf("VM %s: exec: %v", v.name, err)})
		return
	}
	defer vconn.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, api.Error{Code: api.CodeInternal, Error: fmt.Sprintf("exec/stream: take over the connection: %v", err)})
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + api.StreamUpgrade + "\r\n\r\n"); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	relayStream(conn, brw.Reader, vconn)
}

// relayStream copies frames both ways between the client (conn, read
// through fromClient) and vmhost (vconn) until vmhost closes its side
// after its last frame. A client that hangs up closes vconn, which makes
// vmhost kill the command. vmhost refusing the client's frames (it already
// sent its last one) ends only that direction: the frames vmhost sent
// still reach the client.
func relayStream(conn net.Conn, fromClient io.Reader, vconn net.Conn) {
	var once sync.Once
	hangUp := func() { once.Do(func() { conn.Close(); vconn.Close() }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, rerr := fromClient.Read(buf)
			if n > 0 {
				if _, err := vconn.Write(buf[:n]); err != nil {
					return // vmhost is done with input; its frames still flow
				}
			}
			if rerr != nil {
				hangUp() // the client went away
				return
			}
		}
	}()
	_, _ = io.Copy(conn, vconn) // vmhost -> client, until its last frame
	hangUp()
	<-done
}
