package daemon

import (
	"net/http"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vmhost"
)

func (d *Daemon) handleExec(w http.ResponseWriter, r *http.Request, v *vm) {
	var req api.ExecRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Argv) == 0 {
		writeError(w, errorf(http.StatusBadRequest, `exec needs "argv": the command and its arguments, for example {"argv":["uname","-a"]}`))
		return
	}
	v.mu.Lock()
	m := v.manifest
	v.mu.Unlock()
	if m != nil && m.Agent == "none" {
		writeError(w, errorf(http.StatusConflict, "VM %s has no guest agent (image %s has agent: none), so exec cannot work: use an image with mb-agent or qemu-guest-agent, such as mini", v.name, m.Name))
		return
	}
	c, err := runningClient(v, "exec")
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.Call(r.Context(), vmhost.Request{Method: vmhost.MethodExec, Argv: req.Argv, Env: req.Env,
		Stdin: req.Stdin, TimeoutSeconds: req.TimeoutSeconds})
	if err != nil {
		writeError(w, agentError(v, "exec", err))
		return
	}
	res := api.ExecResult{Stdout: resp.Stdout, Stderr: resp.Stderr, OutTruncated: resp.OutTruncated, ErrTruncated: resp.ErrTruncated,
		TimedOut: resp.TimedOut, ExecError: resp.ExecError}
	if resp.ExitCode != nil {
		res.ExitCode = *resp.ExitCode
	}
	writeJSON(w, http.StatusOK, res)
}
