package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxBody bounds how much of a service's answer is read.
const maxBody = 1 << 20

// DoHTTP sends req with ctx and classifies the answer for the dispatcher:
// a 2xx status returns the body; 408, 425, 429 and 5xx are errors worth
// retrying; any other status is Permanent (the request itself is wrong:
// a bad key, a missing room). Errors never contain the request's URL (a
// webhook URL or a query can carry a key), and the secrets given are
// scrubbed from the service's answer quoted in the error.
func DoHTTP(ctx context.Context, client *http.Client, req *http.Request, secrets ...Secret) ([]byte, error) {
	if client == nil {
		client = &http.Client{}
	}
	req = req.WithContext(ctx)
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "mb-monitor")
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %s", req.Method, req.URL.Host, Scrub(err.Error(), secrets...))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %s", req.Method, req.URL.Host, Scrub(err.Error(), secrets...))
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return body, nil
	}
	err = &HTTPError{StatusCode: resp.StatusCode, msg: fmt.Sprintf("%s %s answered %s: %s", req.Method, req.URL.Host, resp.Status, Scrub(snippet(body), secrets...))}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return nil, err
	}
	return nil, Permanent(err)
}

// snippet is the start of a service's answer, on one line, for an error.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		s = "(empty answer)"
	}
	return s
}

// HTTPError is a service's answer with a status other than 2xx.
type HTTPError struct {
	StatusCode int
	msg        string
}

// Error is the method, host, status and the start of the answer.
func (e *HTTPError) Error() string { return e.msg }

// StatusCode is the HTTP status of the HTTPError in err's chain, or 0.
func StatusCode(err error) int {
	var h *HTTPError
	if errors.As(err, &h) {
		return h.StatusCode
	}
	return 0
}
