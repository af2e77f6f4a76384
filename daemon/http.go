package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
	"go.yaml.in/yaml/v3"
)

// maxBody caps request bodies (exec stdin travels inside).
const maxBody = 32 << 20

// maxSpec caps the body of POST /v1/vms, a spec.
const maxSpec = 1 << 20

// routes is the API under /v1/.
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		allowed[path] = append(allowed[path], method)
	}
	route("GET", "/v1/daemon", d.handleDaemon)
	route("POST", "/v1/daemon/stop", d.handleDaemonStop)
	route("GET", "/v1/vms", d.handleList)
	route("POST", "/v1/vms", d.handleCreate)
	route("GET", "/v1/vms/{name}", d.withVM(d.handleInspect))
	route("DELETE", "/v1/vms/{name}", d.withVM(d.handleDelete))
	route("POST", "/v1/vms/{name}/start", d.withVM(d.handleStart))
	route("POST", "/v1/vms/{name}/stop", d.withVM(d.handleStop))
	route("POST", "/v1/vms/{name}/kill", d.withVM(d.handleKill))
	route("POST", "/v1/vms/{name}/exec", d.withVM(d.handleExec))
	route("POST", "/v1/vms/{name}/exec/stream", d.withVM(d.handleExecStream)) // exec_stream.go
	route("GET", "/v1/vms/{name}/metrics", d.withVM(d.handleMetrics))
	route("GET", "/v1/vms/{name}/logs", d.withVM(d.handleLogs))
	route("POST", "/v1/vms/{name}/suspend", d.withVM(d.handleSuspend)) // snapshot.go, snapshot_ops.go
	route("GET", "/v1/vms/{name}/snapshots", d.withVM(d.handleSnapshotList))
	route("POST", "/v1/vms/{name}/snapshots", d.withVM(d.handleSnapshotSave))
	route("DELETE", "/v1/vms/{name}/snapshots/{snap}", d.withVM(d.handleSnapshotRemove))
	route("POST", "/v1/vms/{name}/clone", d.withVM(d.handleClone))
	route("GET", "/v1/events", d.handleEvents)
	route("GET", "/v1/images", d.handleImages) // images.go
	route("POST", "/v1/images", d.handleImageCreate)
	route("DELETE", "/v1/images/{name}", d.handleImageRemove)
	// Wrong methods get a JSON 405 naming the allowed ones (the mux's own
	// answer is plain text).
	for path, methods := range allowed {
		list := strings.Join(methods, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", list)
			writeError(w, errorf(http.StatusMethodNotAllowed, "%s %s: method not allowed, use %s", r.Method, r.URL.Path, list))
		})
	}
	// The monitor's REST API and Prometheus exposition (monitorhost.go).
	mux.Handle("/api/0/", d.monitorHandler())
	mux.Handle("/metrics", d.monitorHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "no such endpoint %s %s: the API lives under /v1/, the monitor's under /api/0/ (see the README)", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, api.CodeInternal
	var he *httpError
	if errors.As(err, &he) {
		status, code = he.status, he.code
	}
	writeJSON(w, status, api.Error{Error: err.Error(), Code: code})
}

func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	if len(data) > maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// A misspelt field must not be ignored silently (the spec is as strict).
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad JSON body of %s %s: %v (see the README's HTTP API table for the accepted fields)", r.Method, r.URL.Path, err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad JSON body of %s %s: more than one JSON value", r.Method, r.URL.Path)
	}
	return nil
}

// withVM resolves {name}: 400 for a bad name, 404 for an unknown VM.
func (d *Daemon) withVM(h func(http.ResponseWriter, *http.Request, *vm)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := spec.ValidateName(name); err != nil {
			writeError(w, errorf(http.StatusBadRequest, "%v", err))
			return
		}
		v := d.lookup(name)
		if v == nil {
			writeError(w, d.notFound(name))
			return
		}
		h(w, r, v)
	}
}

func (d *Daemon) handleDaemon(w http.ResponseWriter, r *http.Request) {
	vms := d.list()
	running := 0
	for _, v := range vms {
		if v.current() != nil {
			running++
		}
	}
	writeJSON(w, http.StatusOK, api.DaemonStatus{PID: os.Getpid(), Version: d.cfg.Version, Home: d.cfg.Home,
		Socket: SocketPath(d.cfg.Home), StartedAt: d.started.UTC(), VMs: len(vms), Running: running,
		Env: CleanEnv(os.Environ()), QEMU: FindQEMU()})
}

func (d *Daemon) handleDaemonStop(w http.ResponseWriter, r *http.Request) {
	var req api.DaemonStopRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"stopping": true, "stop_vms": req.StopVMs})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go d.requestStop(req.StopVMs)
}

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.viewAll(r.Context()))
}

func (d *Daemon) handleCreate(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxSpec+1))
	if err != nil {
		writeError(w, errorf(http.StatusBadRequest, "read spec: %v", err))
		return
	}
	if len(data) > maxSpec {
		writeError(w, errorf(http.StatusRequestEntityTooLarge, "spec over %d bytes (1 MiB) refused: a spec is a few lines of YAML or JSON", maxSpec))
		return
	}
	if i := bytes.IndexByte(data, 0); i >= 0 || !utf8.Valid(data) {
		writeError(w, errorf(http.StatusBadRequest, "the spec is not text (binary or not UTF-8): POST /v1/vms takes a spec as YAML or JSON, for example {\"name\": \"demo\"}"))
		return
	}
	v, err := d.createVM(data)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, d.inspect(r.Context(), v))
}

func (d *Daemon) handleInspect(w http.ResponseWriter, r *http.Request, v *vm) {
	writeJSON(w, http.StatusOK, d.inspect(r.Context(), v))
}

// inspect is the detailed view of v, with its spec.
func (d *Daemon) inspect(ctx context.Context, v *vm) api.VM {
	out := d.view(ctx, v, true)
	v.mu.Lock()
	s := v.spec
	v.mu.Unlock()
	if s != nil {
		if m, err := specMap(s); err == nil {
			out.Spec = m
		}
	}
	return out
}

// specMap renders a spec with its spec.yaml field names.
func specMap(s *spec.Spec) (map[string]any, error) {
	data, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func (d *Daemon) handleDelete(w http.ResponseWriter, r *http.Request, v *vm) {
	force := r.URL.Query().Get("force") != ""
	if err := d.deleteVM(r.Context(), v, force); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": v.name})
}

func (d *Daemon) handleStart(w http.ResponseWriter, r *http.Request, v *vm) {
	var req api.StartRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.TimeoutSeconds < 0 {
		writeError(w, errorf(http.StatusBadRequest, "timeout_seconds %d: must not be negative (0 uses the default)", req.TimeoutSeconds))
		return
	}
	app, err := api.ParseWait(req.Wait)
	if err != nil {
		writeError(w, errorf(http.StatusBadRequest, "%v", err))
		return
	}
	if app != "" {
		wait := time.Duration(req.TimeoutSeconds) * time.Second
		if wait <= 0 {
			wait = defaultAppWait
		}
		v.mu.Lock()
		v.waitApp, v.waitUntil = app, time.Now().Add(wait)
		v.mu.Unlock()
	}
	if err := d.prepareStart(r.Context(), v, req); err != nil { // snapshot.go
		writeError(w, err)
		return
	}
	if _, err := d.startVM(r.Context(), v, time.Duration(req.TimeoutSeconds)*time.Second, false); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d.view(r.Context(), v, false))
}

func (d *Daemon) handleStop(w http.ResponseWriter, r *http.Request, v *vm) {
	var req api.StopRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.TimeoutSeconds < 0 {
		writeError(w, errorf(http.StatusBadRequest, "timeout_seconds %d: must not be negative (0 uses the spec's stop_timeout)", req.TimeoutSeconds))
		return
	}
	out, err := d.stopVM(r.Context(), v, time.Duration(req.TimeoutSeconds)*time.Second, req.Force)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleKill(w http.ResponseWriter, r *http.Request, v *vm) {
	out, err := d.stopVM(r.Context(), v, 0, true)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// runningClient returns a vmhost client for a running VM, or a 409.
func runningClient(v *vm, what string) (*vmhost.Client, error) {
	if v.current() == nil {
		return nil, errorc(http.StatusConflict, api.CodeNotRunning, "VM %s is not running: start it with `mb start %s` before %s", v.name, v.name, what)
	}
	return vmhost.NewClient(v.socket()), nil
}

// agentError turns a vmhost error of exec or metrics into an API error,
// saying clearly when the VM has no guest agent.
func agentError(v *vm, what string, err error) error {
	var re *vmhost.RemoteError
	if errors.As(err, &re) {
		if re.Code == vmhost.CodeNotAvailable {
			return errorc(http.StatusConflict, api.CodeNoAgent, "VM %s has no guest agent, so %s cannot work: %s (use an image with mb-agent or qemu-guest-agent, such as mini)", v.name, what, re.Message)
		}
		return errorc(http.StatusBadGateway, api.CodeGuestFailed, "VM %s: %s failed in the guest: %s", v.name, what, re.Message)
	}
	return errorc(http.StatusBadGateway, api.CodeVMHostFailed, "VM %s: %s: %v", v.name, what, err)
}

func (d *Daemon) handleMetrics(w http.ResponseWriter, r *http.Request, v *vm) {
	c, err := runningClient(v, "reading metrics")
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	resp, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodMetrics})
	if err != nil {
		writeError(w, agentError(v, "metrics", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.Metrics)
	_, _ = w.Write([]byte("\n"))
}

func (d *Daemon) handleLogs(w http.ResponseWriter, r *http.Request, v *vm) {
	q := r.URL.Query()
	file := SerialLogName
	switch q.Get("source") {
	case "", "serial":
	case "vmhost":
		file = VMHostLogName
	default:
		writeError(w, errorf(http.StatusBadRequest, "unknown log source %q: accepted values: serial, vmhost", q.Get("source")))
		return
	}
	follow := q.Get("follow") != "" && q.Get("follow") != "0"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	flush()
	// A follow ends when the VM is deleted: a new VM of the same name is
	// another VM, not more of this log.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-v.gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := followFile(ctx, v.file(file), w, flush, follow); err != nil {
		fmt.Fprintf(w, "\nmb: reading %s failed: %v\n", file, err)
	}
}

func (d *Daemon) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	follow := q.Get("follow") != "" && q.Get("follow") != "0"
	only := q.Get("vm")
	past, ch, cancel := d.events.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(e api.Event) error {
		if only != "" && e.VM != only {
			return nil
		}
		return enc.Encode(e)
	}
	for _, e := range past {
		if err := send(e); err != nil {
			return
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	if !follow {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-ch:
			if err := send(e); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}
