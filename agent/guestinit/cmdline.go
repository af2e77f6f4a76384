package guestinit

import "strings"

// Cmdline holds the kernel command line parameters guestinit reads.
type Cmdline struct {
	// Hostname is mb.hostname=, or "" when absent.
	Hostname string
	// Selftest is mb.selftest= ("poweroff", "panic"), or "" when absent.
	Selftest string
	// Socktop is mb.socktop=: the address on which the agent serves
	// socktop's protocol (for example :3000), or "" for none.
	Socktop string
	// SocktopToken is mb.socktop_token=: the token socktop clients must
	// give.
	SocktopToken string
	// Params holds every key=value parameter; a bare word maps to "".
	Params map[string]string
}

// SplitCmdline splits a kernel command line into parameters the way the
// kernel does: on spaces, keeping double-quoted runs together and dropping
// the quotes (`a="b c"` is one parameter, a=b c).
func SplitCmdline(s string) []string {
	var (
		out     []string
		cur     strings.Builder
		inQuote bool
		have    bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// ParseCmdline parses the contents of /proc/cmdline. Later parameters win
// over earlier ones, as in the kernel.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{Params: map[string]string{}}
	for _, p := range SplitCmdline(s) {
		k, v, _ := strings.Cut(p, "=")
		c.Params[k] = v
		switch k {
		case "mb.hostname":
			c.Hostname = v
		case "mb.selftest":
			c.Selftest = v
		case "mb.socktop":
			c.Socktop = v
		case "mb.socktop_token":
			c.SocktopToken = v
		}
	}
	return c
}

// AgentArgs returns the agent child's arguments and extra environment that
// the command line asks for: --socktop-listen from mb.socktop=, and the
// token in SOCKTOP_TOKEN (the environment, unlike the arguments, is not
// readable by other users of the guest).
func (c Cmdline) AgentArgs() (args, env []string) {
	if c.Socktop != "" {
		args = append(args, "--socktop-listen", c.Socktop)
	}
	if c.SocktopToken != "" {
		env = append(env, "SOCKTOP_TOKEN="+c.SocktopToken)
	}
	return args, env
}
