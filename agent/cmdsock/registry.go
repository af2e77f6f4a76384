// Package cmdsock is mb-agent's command socket: a unix socket inside the
// guest on which local programs send one JSON request per connection and get
// one JSON reply, routed by name to a registered handler. The wire protocol
// is that of Google's guest-agent command monitor: the request names its
// handler in "Command" (or "Name"), the reply carries "Status" (0 is
// success) and "StatusMessage" plus the handler's own fields, and the
// server closes the connection after the reply.
package cmdsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Request is one decoded request as a handler sees it.
type Request struct {
	// Command is the handler's name, from the request's "Command" field
	// (or "Name" when "Command" is absent).
	Command string
	// Raw is the whole request object as the client sent it.
	Raw json.RawMessage
	// Peer is the kernel's record of the client process.
	Peer Peer
}

// Decode unmarshals the whole request object into v (unknown fields are
// ignored, as the routing fields are).
func (r *Request) Decode(v any) error {
	if err := json.Unmarshal(r.Raw, v); err != nil {
		return fmt.Errorf("request fields: %w", err)
	}
	return nil
}

// Peer identifies the process at the other end of a connection.
type Peer struct {
	PID, UID, GID int
}

// Reply is a handler's answer: its fields are sent next to Status and
// StatusMessage. A handler may set "Status" and "StatusMessage" itself;
// otherwise the server sends 0 and "".
type Reply map[string]any

// Handler serves one command. An error becomes status 105 with the error's
// text as StatusMessage.
type Handler func(ctx context.Context, req *Request) (Reply, error)

// Registry holds the handlers by command name. Its zero value is not
// usable; use NewRegistry. It is safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	handlers map[string]Handler
	changed  chan struct{} // one pending wake-up for the server
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[string]Handler{}, changed: make(chan struct{}, 1)}
}

// ErrDuplicate is returned by Register for a name already registered.
var ErrDuplicate = errors.New("command already has a handler")

// Register adds h under name. A server watching the registry starts
// listening when the first handler arrives.
func (r *Registry) Register(name string, h Handler) error {
	if name == "" || h == nil {
		return errors.New("register: a handler needs a name and a function")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.handlers[name]; ok {
		return fmt.Errorf("register %q: %w", name, ErrDuplicate)
	}
	r.handlers[name] = h
	r.notify()
	return nil
}

// Unregister removes the handler of name. A server watching the registry
// stops listening when the last handler leaves.
func (r *Registry) Unregister(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.handlers[name]; !ok {
		return fmt.Errorf("unregister %q: no such handler", name)
	}
	delete(r.handlers, name)
	r.notify()
	return nil
}

// Lookup returns the handler of name.
func (r *Registry) Lookup(name string) (Handler, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.handlers[name]
	return h, ok
}

// Names returns the registered command names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Len returns the number of registered handlers.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.handlers)
}

// notify wakes the watching server without blocking; r.mu is held.
func (r *Registry) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}
