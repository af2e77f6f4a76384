package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
)

// The image cache has one writer, the daemon: `mb image pull`, `import`
// and `rm` call these handlers. Each change holds the image's lock
// exclusively; VM create and start hold it shared (image.Share), so an
// image cannot be removed or replaced while a VM is being made from it.

// maxImageBody caps the small JSON bodies of the image requests.
const maxImageBody = 1 << 20

// writeCoded answers an error with its status and machine-readable code.
func writeCoded(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, api.Error{Error: fmt.Sprintf(format, args...), Code: code})
}

// decodeStrict reads a JSON body into v, refusing unknown fields, trailing
// data and bodies over maxImageBody; it answers the error itself and
// returns false.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxImageBody+1))
	if err != nil {
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "read request body: %v", err)
		return false
	}
	if len(data) > maxImageBody {
		writeCoded(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "request body over %d bytes", maxImageBody)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "bad JSON body: %v", err)
		return false
	}
	if dec.More() {
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "bad JSON body: data after the object")
		return false
	}
	return true
}

// imageCode classifies an image error for api.Error.Code and the status.
func imageCode(err error) (int, string) {
	switch {
	case errors.Is(err, image.ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, image.ErrInUse):
		return http.StatusConflict, api.CodeInUse
	case errors.Is(err, image.ErrExists):
		return http.StatusConflict, api.CodeExists
	case errors.Is(err, image.ErrDigestMismatch), errors.Is(err, disk.ErrNotImage),
		errors.Is(err, disk.ErrReferencesFile), errors.Is(err, disk.ErrJSONName),
		errors.Is(err, os.ErrNotExist):
		return http.StatusBadRequest, api.CodeBadRequest
	}
	return http.StatusInternalServerError, api.CodeInternal
}

// vmSpecs returns every VM's spec for image.UsedBy, the unreadable ones
// parsed as they are: an image must not be removed from under a VM whose
// spec is merely invalid.
func (d *Daemon) vmSpecs() []*spec.Spec {
	var out []*spec.Spec
	for _, v := range d.list() {
		v.mu.Lock()
		s, deleted := v.spec, v.deleted
		v.mu.Unlock()
		if deleted {
			continue
		}
		if s == nil {
			data, err := os.ReadFile(v.file(spec.FileName))
			if err != nil {
				continue
			}
			if s, err = spec.Parse(data); err != nil {
				continue
			}
			if s.Name == "" {
				s.Name = v.name
			}
			s.SetDefaults()
		}
		out = append(out, s)
	}
	return out
}

func toAPIImage(e image.Entry) api.Image {
	return api.Image{Name: e.Name, Format: e.Format, Size: e.Size, VirtualSize: e.VirtualSize, SHA256: e.SHA256,
		Source: e.Source, Kernel: e.Kernel, UsedBy: e.UsedBy, Error: e.Error}
}

// handleImages is GET /v1/images.
func (d *Daemon) handleImages(w http.ResponseWriter, r *http.Request) {
	entries, err := image.List(r.Context(), d.cfg.Home, d.vmSpecs())
	if err != nil {
		writeCoded(w, http.StatusInternalServerError, api.CodeInternal, "%v", err)
		return
	}
	out := make([]api.Image, 0, len(entries))
	for _, e := range entries {
		out = append(out, toAPIImage(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleImageCreate is POST /v1/images, a pull (url) or an import (local
// files). A bad request is answered with an error status; an accepted one
// with 200 and an NDJSON stream of api.ImageEvent lines (progress while a
// download runs), the last one carrying the image or the error. The work
// ends when the client goes away.
func (d *Daemon) handleImageCreate(w http.ResponseWriter, r *http.Request) {
	var req api.ImageRequest
	if !decodeStrict(w, r, &req) {
		return
	}
	local := req.Disk != "" || req.Kernel != "" || req.Initrd != ""
	switch {
	case req.URL == "" && !local:
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "give url (to pull an image) or disk / kernel (to import local files)")
		return
	case req.URL != "" && local:
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "give either url (pull) or disk / kernel (import), not both")
		return
	case req.URL != "" && (req.Cmdline != "" || req.Agent != "" || req.ReadyLine != ""):
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "cmdline, agent and ready_line go with an import of local files, not with url")
		return
	case local && req.SHA256 != "":
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "sha256 goes with url (a pull); an import records the digest it computes")
		return
	}
	for _, f := range []struct{ what, path string }{{"disk", req.Disk}, {"kernel", req.Kernel}, {"initrd", req.Initrd}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "%s %q: give an absolute path (the daemon reads the file)", f.what, f.path)
			return
		}
	}
	name := req.Name
	if name == "" {
		src := req.URL
		for _, p := range []string{req.Kernel, req.Disk} {
			if p != "" {
				src = p
			}
		}
		name = image.NameFromSource(src)
	}
	if err := image.ValidateName(name); err != nil {
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "%v", err)
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(ev api.ImageEvent) {
		_ = enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	var (
		m   *image.Manifest
		err error
	)
	if req.URL != "" {
		d.log.Info("pulling image", "image", name, "url", req.URL)
		m, err = image.Pull(r.Context(), d.cfg.Home, image.PullOptions{
			URL: req.URL, Name: name, SHA256: req.SHA256, Arch: req.Arch, Logger: d.log,
			OnProgress: func(done, total int64) { send(api.ImageEvent{Done: done, Total: total}) },
		})
	} else {
		d.log.Info("importing image", "image", name, "disk", req.Disk, "kernel", req.Kernel)
		m, err = image.Import(r.Context(), d.cfg.Home, image.ImportOptions{
			Name: name, Disk: req.Disk, Kernel: req.Kernel, Initrd: req.Initrd, Cmdline: req.Cmdline,
			Arch: req.Arch, Agent: req.Agent, ReadyLine: req.ReadyLine,
		})
	}
	if err != nil {
		_, code := imageCode(err)
		if code == api.CodeInternal && req.URL != "" && !errors.Is(err, syscall.ENOSPC) {
			code = api.CodeDownloadFailed
		}
		d.log.Warn("image not made", "image", name, "err", err)
		send(api.ImageEvent{Error: err.Error(), Code: code})
		return
	}
	d.log.Info("image ready", "image", m.Name, "source", m.Source)
	img := toAPIImage(image.Describe(r.Context(), d.cfg.Home, m.Name, d.vmSpecs()))
	send(api.ImageEvent{Image: &img})
}

// handleImageRemove is DELETE /v1/images/{name}: refused while a VM uses
// the image, checked under the image's lock.
func (d *Daemon) handleImageRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := image.ValidateName(name); err != nil {
		writeCoded(w, http.StatusBadRequest, api.CodeBadRequest, "%v", err)
		return
	}
	if err := image.Remove(r.Context(), d.cfg.Home, name, d.vmSpecs); err != nil {
		status, code := imageCode(err)
		writeCoded(w, status, code, "%v", err)
		return
	}
	d.log.Info("image removed", "image", name)
	writeJSON(w, http.StatusOK, map[string]string{"removed": name})
}
