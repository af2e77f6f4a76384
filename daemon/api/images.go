package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// CodeDownloadFailed is the code of a pull whose download failed (network,
// server): retrying later may help.
const CodeDownloadFailed = "download_failed"

// Image is one cached image, as GET /v1/images lists it and as pull and
// import answer.
type Image struct {
	Name string `json:"name"`
	// Format is the disk's format (qcow2 or raw), or "kernel" for a
	// kernel-only image.
	Format string `json:"format"`
	// Size is the bytes the image's files hold; VirtualSize the disk's
	// size as the guest sees it (0 without a disk).
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Source      string `json:"source,omitempty"`
	Kernel      bool   `json:"kernel"`
	// UsedBy lists the VMs whose spec names the image.
	UsedBy []string `json:"used_by"`
	// Error says why the image is unusable (incomplete, unreadable).
	Error string `json:"error,omitempty"`
}

// ImageRequest is the body of POST /v1/images: either a pull (URL set)
// or an import of local files (Disk and/or Kernel set, absolute paths: the
// daemon reads them), never both.
type ImageRequest struct {
	// Name is the image name; derived from the URL or file when empty.
	Name string `json:"name,omitempty"`
	// Arch is recorded in the manifest (x86_64 or aarch64).
	Arch string `json:"arch,omitempty"`

	// URL is an http://, https:// or file:// URL of a qcow2 or raw disk.
	URL string `json:"url,omitempty"`
	// SHA256 is the expected digest of the download (hex); checked when set.
	SHA256 string `json:"sha256,omitempty"`

	// Disk, Kernel, Initrd and Cmdline make an image of local files.
	Disk      string `json:"disk,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	Initrd    string `json:"initrd,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	Agent     string `json:"agent,omitempty"`
	ReadyLine string `json:"ready_line,omitempty"`
}

// ImageEvent is one line of the NDJSON stream POST /v1/images answers
// with once the request is accepted (a bad request gets an error status
// instead): progress lines while a download runs, then exactly one line
// with Image (success) or Error and Code (failure).
type ImageEvent struct {
	// Done and Total are bytes received and expected (Total -1: unknown).
	Done  int64 `json:"done,omitempty"`
	Total int64 `json:"total,omitempty"`
	// Image is the new image; set on the last line of a success.
	Image *Image `json:"image,omitempty"`
	// Error and Code end a failed request (Code is one of the Code* values).
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// Images lists the cached images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var out []Image
	if err := c.call(ctx, http.MethodGet, "/v1/images", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateImage asks the daemon to pull or import an image and waits for
// it, passing download progress to progress (when not nil).
func (c *Client) CreateImage(ctx context.Context, req ImageRequest, progress func(done, total int64)) (*Image, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/images", req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev ImageEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("decode the daemon's image progress: %w", err)
		}
		switch {
		case ev.Image != nil:
			return ev.Image, nil
		case ev.Error != "":
			return nil, &StatusError{Status: statusOf(ev.Code), Message: ev.Error, Code: ev.Code}
		case progress != nil:
			progress(ev.Done, ev.Total)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("the mb daemon at %s went away before the image was done (check with mb image ls and retry): %w", c.socket, err)
	}
	return nil, errors.New("the mb daemon ended the request without a result (was it stopped?): check with mb image ls and retry")
}

// statusOf maps an error code sent in-band back to its HTTP status.
func statusOf(code string) int {
	switch code {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeExists, CodeInUse:
		return http.StatusConflict
	case CodeInternal:
		return http.StatusInternalServerError
	}
	return http.StatusBadGateway
}

// RemoveImage deletes an image no VM uses.
func (c *Client) RemoveImage(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/v1/images/"+url.PathEscape(name), nil, nil)
}
