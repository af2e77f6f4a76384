package service

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// channelName is an accepted notification channel name.
var channelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (s *Service) getChannels(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) || !requireAdmin(w, r, "listing notification channels") {
		return
	}
	ld := s.cur.Load()
	out := map[string]any{}
	for name, c := range ld.channels {
		out[name] = c.Redacted()
	}
	writeJSON(w, http.StatusOK, map[string]any{"notification_channels": out})
}

// putChannel adds or replaces a channel (POST with {"name", "channel"},
// PUT .../NAME with the channel) in monitor.yaml, through the checked,
// backed-up replacement of POST /api/0/config.
func (s *Service) putChannel(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r, "changing notification channels") {
		return
	}
	name := r.PathValue("name")
	var channel map[string]any
	if name == "" {
		var req struct {
			Name    string         `json:"name"`
			Channel map[string]any `json:"channel"`
		}
		if !decodeBody(w, r, &req) {
			return
		}
		name, channel = req.Name, req.Channel
	} else if !decodeBody(w, r, &channel) {
		return
	}
	if !channelName.MatchString(name) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("channel name %q: use letters, digits, '_', '.' and '-' (at most 64)", name))
		return
	}
	if len(channel) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`give the channel's settings, at least "type"`))
		return
	}
	s.editChannels(w, r, "channel "+name, func(m *yaml.Node) error {
		b, _ := json.Marshal(channel)
		var v yaml.Node
		if err := yaml.Unmarshal(b, &v); err != nil {
			return err
		}
		val := v.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == name {
				m.Content[i+1] = val
				return nil
			}
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, val)
		return nil
	})
}

func (s *Service) deleteChannel(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r, "removing notification channels") {
		return
	}
	name := r.PathValue("name")
	s.editChannels(w, r, "channel "+name, func(m *yaml.Node) error {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == name {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
				return nil
			}
		}
		return errNoChannel(name)
	})
}

type errNoChannel string

func (e errNoChannel) Error() string { return fmt.Sprintf("no notification channel %q", string(e)) }

// editChannels applies edit to monitor.yaml's notification_channels
// mapping and puts the result in force.
func (s *Service) editChannels(w http.ResponseWriter, r *http.Request, target string, edit func(*yaml.Node) error) {
	path := s.Config().Path
	data, err := os.ReadFile(path)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("reading %s: %w", path, err))
		return
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("%s: %w", path, err))
		return
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("%s is not a mapping", path))
		return
	}
	var chans *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "notification_channels" {
			chans = top.Content[i+1]
		}
	}
	switch {
	case chans == nil:
		chans = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "notification_channels"}, chans)
	case chans.Kind != yaml.MappingNode: // "notification_channels:" with nothing
		*chans = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if err := edit(chans); err != nil {
		status := http.StatusBadRequest
		if _, ok := err.(errNoChannel); ok {
			status = http.StatusNotFound
		}
		writeError(w, status, err)
		return
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	backup, err := s.replaceConfig(out)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.record(r.Context(), r.Method+" notification channel", target, "backup "+backup)
	writeJSON(w, http.StatusOK, map[string]any{"applied": true, "backup": backup})
}
