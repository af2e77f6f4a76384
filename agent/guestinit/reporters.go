package guestinit

import "strings"

// Reporter is a child of PID 1 that reports the guest to a monitor
// outside: mb-agent register or mb-agent heartbeat, asked for on the
// kernel command line.
type Reporter struct {
	// Name is "register" or "heartbeat".
	Name string
	// Args are mb-agent's arguments, the subcommand first.
	Args []string
	// Env is extra environment (tokens and keys, which other users of the
	// guest cannot read there, unlike arguments).
	Env []string
}

// Reporters returns the reporters the command line asks for:
//
//	mb.register=URL            mb-agent register --api URL --interface IFACE
//	mb.register_interval=D     its --interval (seconds or a duration)
//	mb.register_token=T        its token ($MB_REGISTER_TOKEN)
//	mb.heartbeat=HOST[:PORT]   mb-agent heartbeat -b HOST[:PORT] (several
//	                           servers separated by commas)
//	mb.heartbeat_interval=D    its --interval
//	mb.heartbeat_name=NAME     its -n (default: the hostname)
//	mb.heartbeat_key=K         its hmac_key ($MB_HEARTBEAT_KEY)
//
// iface is the interface init configured ("" when none: eth0 is used).
func (c Cmdline) Reporters(iface string) []Reporter {
	if iface == "" {
		iface = "eth0"
	}
	var out []Reporter
	if api := c.Params["mb.register"]; api != "" {
		r := Reporter{Name: "register", Args: []string{"register", "--api", api, "--interface", iface}}
		if v := c.Params["mb.register_interval"]; v != "" {
			r.Args = append(r.Args, "--interval", v)
		}
		if v := c.Params["mb.register_token"]; v != "" {
			r.Env = append(r.Env, "MB_REGISTER_TOKEN="+v)
		}
		out = append(out, r)
	}
	if hb := c.Params["mb.heartbeat"]; hb != "" {
		r := Reporter{Name: "heartbeat", Args: []string{"heartbeat", "-b"}}
		if v := c.Params["mb.heartbeat_interval"]; v != "" {
			r.Args = append(r.Args, "--interval", v)
		}
		if v := c.Params["mb.heartbeat_name"]; v != "" {
			r.Args = append(r.Args, "-n", v)
		}
		if v := c.Params["mb.heartbeat_key"]; v != "" {
			r.Env = append(r.Env, "MB_HEARTBEAT_KEY="+v)
		}
		for _, s := range strings.Split(hb, ",") {
			if s = strings.TrimSpace(s); s != "" {
				r.Args = append(r.Args, s)
			}
		}
		out = append(out, r)
	}
	return out
}
