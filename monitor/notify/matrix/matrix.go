// Package matrix sends notifications to a Matrix room through the
// client-server API: it logs in with a password (POST
// /_matrix/client/v3/login) unless given an access token, then sends an
// m.room.message event (PUT
// /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}). The
// transaction ID is derived from the message ID, so a retried send is
// deduplicated by the homeserver.
package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "matrix"

// Config is a matrix channel's settings (hbd's names: homeserver, user,
// password, room_id).
type Config struct {
	Homeserver  string        // base URL, e.g. https://matrix.example.org
	User        string        // the user ID or localpart to log in as
	Password    notify.Secret // for logging in; or
	AccessToken notify.Secret // used as is, no login
	RoomID      string        // !opaque:server
}

// Channel is a configured matrix channel. It keeps the access token from
// its last login.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client

	mu    sync.Mutex
	token notify.Secret
}

// New returns a matrix channel.
func New(name string, cfg Config) *Channel {
	cfg.Homeserver = strings.TrimRight(cfg.Homeserver, "/")
	return &Channel{name: name, cfg: cfg, client: &http.Client{}, token: cfg.AccessToken}
}

// Parse reads a matrix entry: homeserver, user, password or access_token
// (each also as *_file), room_id.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	cfg := Config{
		Homeserver:  f.URL("homeserver", notify.Required),
		User:        f.String("user", notify.Optional),
		Password:    f.Secret("password", notify.Optional),
		AccessToken: f.Secret("access_token", notify.Optional),
		RoomID:      f.String("room_id", notify.Required),
	}
	switch {
	case cfg.Password.IsSet() == cfg.AccessToken.IsSet():
		f.Fail("password", "give either a password (with user) or an access_token")
	case cfg.Password.IsSet() && cfg.User == "":
		f.Fail("user", "missing; logging in with a password needs the user")
	}
	if cfg.RoomID != "" && (!strings.HasPrefix(cfg.RoomID, "!") || !strings.Contains(cfg.RoomID, ":")) {
		f.Fail("room_id", "%q is not a room ID; it looks like !abcdef:example.org (the room's settings show it)", cfg.RoomID)
	}
	return New(name, cfg), nil
}

// Name implements notify.Channel.
func (c *Channel) Name() string { return c.name }

// Type implements notify.Channel.
func (c *Channel) Type() string { return Type }

// String names the channel without its configuration.
func (c *Channel) String() string { return Type + " channel " + c.name }

// Redacted implements notify.Redactor.
func (c *Channel) Redacted() map[string]any {
	return map[string]any{"homeserver": c.cfg.Homeserver, "user": c.cfg.User, "password": c.cfg.Password.String(),
		"access_token": c.cfg.AccessToken.String(), "room_id": c.cfg.RoomID}
}

// errUnauthorized marks a 401 on send: the token expired or was revoked.
var errUnauthorized = errors.New("matrix: access token refused")

// Send implements notify.Channel. With a password, a refused token leads
// to one new login and one more try.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	token, err := c.accessToken(ctx, false)
	if err != nil {
		return err
	}
	err = c.send(ctx, token, m)
	if errors.Is(err, errUnauthorized) && c.cfg.Password.IsSet() {
		if token, err = c.accessToken(ctx, true); err != nil {
			return err
		}
		err = c.send(ctx, token, m)
	}
	if errors.Is(err, errUnauthorized) {
		return notify.Permanent(err)
	}
	return err
}

// accessToken returns the token to use, logging in when there is none or
// when fresh is set.
func (c *Channel) accessToken(ctx context.Context, fresh bool) (notify.Secret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token.IsSet() && !fresh {
		return c.token, nil
	}
	body, _ := json.Marshal(map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": c.cfg.User},
		"password":                    c.cfg.Password.Reveal(),
		"initial_device_display_name": "mb monitor",
	})
	req, err := http.NewRequest(http.MethodPost, c.cfg.Homeserver+"/_matrix/client/v3/login", bytes.NewReader(body))
	if err != nil {
		return notify.Secret{}, notify.Permanent(fmt.Errorf("matrix: bad homeserver"))
	}
	req.Header.Set("Content-Type", "application/json")
	ans, err := notify.DoHTTP(ctx, c.client, req, c.cfg.Password)
	if err != nil {
		return notify.Secret{}, fmt.Errorf("matrix: logging in as %s: %w", c.cfg.User, err)
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(ans, &login); err != nil || login.AccessToken == "" {
		return notify.Secret{}, fmt.Errorf("matrix: logging in as %s: no access_token in the answer", c.cfg.User)
	}
	c.token = notify.NewSecret(login.AccessToken)
	return c.token, nil
}

// send puts the m.room.message event.
func (c *Channel) send(ctx context.Context, token notify.Secret, m notify.Message) error {
	body, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": m.Plain()})
	u := c.cfg.Homeserver + "/_matrix/client/v3/rooms/" + url.PathEscape(c.cfg.RoomID) + "/send/m.room.message/" + url.PathEscape("mb-"+m.ID)
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("matrix: bad homeserver"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	if _, err := notify.DoHTTP(ctx, c.client, req, token, c.cfg.Password); err != nil {
		if notify.StatusCode(err) == http.StatusUnauthorized {
			return fmt.Errorf("%w: %v", errUnauthorized, err)
		}
		return fmt.Errorf("matrix: sending to %s: %w", c.cfg.RoomID, err)
	}
	return nil
}
