package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vmhost"
)

// maxExecBody caps an exec body: 16 MiB of stdin in base64, plus room for
// argv and env. It is larger than other bodies' limit on purpose.
const maxExecBody = vmhost.MaxExecStdin/3*4 + 1<<20

// execError is an exec failure with its HTTP status and API code.
type execError struct {
	status int
	code   string
	msg    string
}

func (e *execError) Error() string { return e.msg }

func execErrorf(status int, code, format string, args ...any) *execError {
	return &execError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (d *Daemon) handleExec(w http.ResponseWriter, r *http.Request, v *vm) {
	req, xe := decodeExec(r)
	if xe != nil {
		writeJSON(w, xe.status, api.Error{Error: xe.msg, Code: xe.code})
		return
	}
	v.mu.Lock()
	m := v.manifest
	v.mu.Unlock()
	if m != nil && m.Agent == "none" {
		writeJSON(w, http.StatusConflict, api.Error{Code: api.CodeNoAgent,
			Error: fmt.Sprintf("VM %s has no guest agent (image %s has agent: none), so exec cannot work: use an image with mb-agent or qemu-guest-agent, such as mini", v.name, m.Name)})
		return
	}
	if v.current() == nil {
		writeJSON(w, http.StatusConflict, api.Error{Code: api.CodeNotRunning,
			Error: fmt.Sprintf("VM %s is not running: start it with `mb start %s` before exec", v.name, v.name)})
		return
	}
	c := vmhost.NewClient(v.socket())
	// r.Context() ends when the client goes away; the vmhost client then
	// hangs up, and vmhost kills the command in the guest.
	resp, err := c.Call(r.Context(), vmhost.Request{Method: vmhost.MethodExec, Argv: req.Argv, Env: req.Env,
		Stdin: req.Stdin, TimeoutSeconds: req.TimeoutSeconds})
	if err != nil {
		xe := execFailure(v, err)
		writeJSON(w, xe.status, api.Error{Error: xe.msg, Code: xe.code})
		return
	}
	res := api.ExecResult{Stdout: resp.Stdout, Stderr: resp.Stderr, OutTruncated: resp.OutTruncated, ErrTruncated: resp.ErrTruncated,
		TimedOut: resp.TimedOut, ExecError: resp.ExecError}
	if resp.Code == vmhost.CodeExecStart {
		res.Code = api.CodeExecStart
	}
	if resp.ExitCode != nil {
		res.ExitCode = *resp.ExitCode
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeExec reads and checks an exec body as strictly as the CLI does.
func decodeExec(r *http.Request) (*api.ExecRequest, *execError) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxExecBody+1))
	if err != nil {
		return nil, execErrorf(http.StatusBadRequest, api.CodeBadRequest, "read request body: %v", err)
	}
	if len(data) > maxExecBody {
		return nil, execErrorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge,
			"exec body over %d bytes: stdin is limited to %d bytes (16 MiB)", maxExecBody, vmhost.MaxExecStdin)
	}
	var req api.ExecRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, execErrorf(http.StatusBadRequest, api.CodeBadRequest,
			`bad exec body: %v (fields: argv, env, stdin, timeout_seconds; for example {"argv":["uname","-a"]})`, err)
	}
	if dec.More() {
		return nil, execErrorf(http.StatusBadRequest, api.CodeBadRequest, "bad exec body: trailing data after the JSON object")
	}
	switch {
	case len(req.Argv) == 0:
		return nil, execErrorf(http.StatusBadRequest, api.CodeBadRequest, `exec needs "argv": the command and its arguments, for example {"argv":["uname","-a"]}`)
	case req.Argv[0] == "":
		return nil, execErrorf(http.StatusBadRequest, api.CodeBadRequest, `exec: argv[0] is empty: give the program to run, for example {"argv":["uname","-a"]}`)
	case req.TimeoutSeconds < 0:
		return nil, execErrorf(http.StatusBadRequest, api.CodeBadRequest, "exec: timeout_seconds %d is negative: give 0 (no limit) or a number of seconds", req.TimeoutSeconds)
	case len(req.Stdin) > vmhost.MaxExecStdin:
		return nil, execErrorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "exec: stdin of %d bytes is over the limit of %d (16 MiB)", len(req.Stdin), vmhost.MaxExecStdin)
	}
	return &req, nil
}

// execFailure maps a failed vmhost exec call onto the API by vmhost's
// code, never by its message.
func execFailure(v *vm, err error) *execError {
	var re *vmhost.RemoteError
	if !errors.As(err, &re) {
		return execErrorf(http.StatusBadGateway, api.CodeVMHostFailed, "VM %s: exec: %v", v.name, err)
	}
	switch re.Code {
	case vmhost.CodeNotAvailable:
		return execErrorf(http.StatusConflict, api.CodeNoAgent, "VM %s has no guest agent, so exec cannot work: %s (use an image with mb-agent or qemu-guest-agent, such as mini)", v.name, re.Message)
	case vmhost.CodeBadRequest:
		return execErrorf(http.StatusBadRequest, api.CodeBadRequest, "VM %s: %s", v.name, re.Message)
	case vmhost.CodeTooLarge:
		return execErrorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "VM %s: %s", v.name, re.Message)
	}
	return execErrorf(http.StatusBadGateway, api.CodeGuestFailed, "VM %s: exec failed in the guest: %s", v.name, re.Message)
}
