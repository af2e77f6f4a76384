package agent

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

func (s *server) commandTable() map[string]command {
	t := map[string]command{
		"guest-sync-delimited":         {run: cmdSync, delimited: true},
		"guest-sync":                   {run: cmdSync},
		"guest-ping":                   {run: cmdPing},
		"guest-info":                   {run: s.cmdInfo},
		"guest-get-host-name":          {run: cmdHostName},
		"guest-get-osinfo":             {run: cmdOSInfo},
		"guest-get-time":               {run: cmdTime},
		"guest-set-time":               {run: cmdSetTime}, // warm.go
		qgaproto.CloneCommand:          {run: cmdClone},
		"guest-network-get-interfaces": {run: s.cmdInterfaces},
		"guest-shutdown":               {run: s.cmdShutdown, noReply: true},
		"guest-exec":                   {run: s.cmdExec},
		"guest-exec-status":            {run: s.cmdExecStatus},
		"guest-file-open":              {run: s.cmdFileOpen},
		"guest-file-read":              {run: s.cmdFileRead},
		"guest-file-write":             {run: s.cmdFileWrite},
		"guest-file-close":             {run: s.cmdFileClose},
		qgaproto.MetricsCommand:        {run: s.cmdMetrics},
		qgaproto.ExecKillCommand:       {run: s.cmdExecKill},
		qgaproto.ExecInputCommand:      {run: s.cmdExecInput},
		qgaproto.ExecReadCommand:       {run: s.cmdExecRead},
		qgaproto.ExecResizeCommand:     {run: s.cmdExecResize},
	}
	if s.messages != nil {
		t[qgaproto.MessagesCommand] = command{run: s.cmdMessages}
	}
	return t
}

// cmdMessages answers mb-get-messages: it forgets what the host
// acknowledges and returns what is queued after it.
func (s *server) cmdMessages(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.MessagesArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	return s.messages.Collect(a), nil
}

func cmdSync(_ context.Context, args json.RawMessage) (any, error) {
	var a struct {
		ID *json.Number `json:"id"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.ID == nil {
		return nil, genericError("Parameter 'id' is missing")
	}
	return a.ID, nil
}

func cmdPing(_ context.Context, args json.RawMessage) (any, error) {
	return nil, decodeArgs(args, &struct{}{})
}

func (s *server) cmdInfo(_ context.Context, args json.RawMessage) (any, error) {
	if err := decodeArgs(args, &struct{}{}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(s.commands))
	for name := range s.commands {
		names = append(names, name)
	}
	sort.Strings(names)
	info := qgaproto.Info{Version: Version}
	for _, name := range names {
		info.SupportedCommands = append(info.SupportedCommands, qgaproto.CommandInfo{
			Name: name, Enabled: true, SuccessResponse: !s.commands[name].noReply,
		})
	}
	return info, nil
}

func cmdHostName(_ context.Context, args json.RawMessage) (any, error) {
	if err := decodeArgs(args, &struct{}{}); err != nil {
		return nil, err
	}
	name, err := os.Hostname()
	if err != nil {
		return nil, genericError("read host name: %v", err)
	}
	return qgaproto.HostName{HostName: name}, nil
}

func cmdTime(_ context.Context, args json.RawMessage) (any, error) {
	if err := decodeArgs(args, &struct{}{}); err != nil {
		return nil, err
	}
	return time.Now().UnixNano(), nil
}

func cmdOSInfo(_ context.Context, args json.RawMessage) (any, error) {
	if err := decodeArgs(args, &struct{}{}); err != nil {
		return nil, err
	}
	var info qgaproto.OSInfo
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		info.KernelRelease = unix.ByteSliceToString(u.Release[:])
		info.KernelVersion = unix.ByteSliceToString(u.Version[:])
		info.Machine = unix.ByteSliceToString(u.Machine[:])
	}
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		rel := parseOSRelease(string(data))
		info.ID, info.Name, info.PrettyName = rel["ID"], rel["NAME"], rel["PRETTY_NAME"]
		info.Version, info.VersionID = rel["VERSION"], rel["VERSION_ID"]
		info.Variant, info.VariantID = rel["VARIANT"], rel["VARIANT_ID"]
		break
	}
	return info, nil
}

// parseOSRelease reads os-release(5) KEY=value lines, unquoting values.
func parseOSRelease(data string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v)
		}
		out[k] = v
	}
	return out
}
