package service

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/mbvm/mb/monitor"
)

// principal is who makes a request. A trusted caller (mb.sock, or a
// loopback listener without users) sees and may do everything; a user
// authenticated on the TCP listener follows hbd's roles: an admin sees
// every host, another user only the hosts where they are owner, manager
// or monitor.
type principal struct {
	name       string
	restricted bool // a non-admin user
}

type principalKey struct{}

// WithUser returns a context naming the trusted caller who makes a request
// (the daemon names mb.sock's user), for acknowledgements and silences.
func WithUser(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal{name: name})
}

// withAuthenticated names a user authenticated by password.
func withAuthenticated(ctx context.Context, name string, admin bool) context.Context {
	return context.WithValue(ctx, principalKey{}, principal{name: name, restricted: !admin})
}

func principalOf(ctx context.Context) (principal, bool) {
	p, ok := ctx.Value(principalKey{}).(principal)
	return p, ok
}

// userOf is the name a request is made by: the authenticated user, the
// name given to WithUser, or the user the process runs as.
func (s *Service) userOf(ctx context.Context) string {
	if p, ok := principalOf(ctx); ok && p.name != "" {
		return p.name
	}
	return s.localWho
}

// role is a user's role on a host.
type role int

const (
	roleNone role = iota
	roleMonitor
	roleManager
	roleOwner
	roleAll // an admin or a trusted caller
)

func (s *Service) roleOn(ctx context.Context, h monitor.HostInfo) role {
	p, ok := principalOf(ctx)
	if !ok || !p.restricted {
		return roleAll
	}
	switch {
	case h.Owner == p.name:
		return roleOwner
	case slices.Contains(h.Managers, p.name):
		return roleManager
	case slices.Contains(h.Monitors, p.name):
		return roleMonitor
	}
	return roleNone
}

// visible reports whether the caller may see the host.
func (s *Service) visible(ctx context.Context, h monitor.HostInfo) bool {
	return s.roleOn(ctx, h) > roleNone
}

// restricted reports whether the caller is a non-admin user.
func restricted(ctx context.Context) bool {
	p, ok := principalOf(ctx)
	return ok && p.restricted
}

// requireAdmin refuses a non-admin user with 403.
func requireAdmin(w http.ResponseWriter, r *http.Request, what string) bool {
	if !restricted(r.Context()) {
		return true
	}
	p, _ := principalOf(r.Context())
	writeError(w, http.StatusForbidden, fmt.Errorf("%s needs an admin user; %s is not one (admin: true in monitor.yaml's users)", what, p.name))
	return false
}

// errForbidden is a refusal for a user without the needed role.
func errForbidden(user, what, host string) error {
	return fmt.Errorf("%s needs the owner or manager role on %q; %s does not have it", what, host, user)
}
