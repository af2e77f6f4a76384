package guestinit

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCmdline(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"console=ttyS0 panic=-1 quiet\n", []string{"console=ttyS0", "panic=-1", "quiet"}},
		{`  a="b c"  d `, []string{"a=b c", "d"}},
		{`x=""`, []string{"x="}},
		{"a\tb", []string{"a", "b"}},
	}
	for _, c := range cases {
		if got := SplitCmdline(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SplitCmdline(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline("console=ttyS0 mb.hostname=first quiet mb.hostname=demo mb.selftest=poweroff\n")
	if c.Hostname != "demo" {
		t.Errorf("Hostname = %q, want demo (last one wins)", c.Hostname)
	}
	if c.Selftest != "poweroff" {
		t.Errorf("Selftest = %q, want poweroff", c.Selftest)
	}
	if v, ok := c.Params["quiet"]; !ok || v != "" {
		t.Errorf("Params[quiet] = %q, %v; want present and empty", v, ok)
	}
	if c.Params["console"] != "ttyS0" {
		t.Errorf("Params[console] = %q", c.Params["console"])
	}
	empty := ParseCmdline("console=ttyS0")
	if empty.Hostname != "" || empty.Selftest != "" {
		t.Errorf("unexpected values from a command line without mb.*: %+v", empty)
	}
}

func TestCmdlineSocktopAgentArgs(t *testing.T) {
	c := ParseCmdline("console=ttyS0 mb.socktop=:3000 mb.socktop_token=s3cret")
	args, env := c.AgentArgs()
	if strings.Join(args, " ") != "--socktop-listen :3000" || strings.Join(env, " ") != "SOCKTOP_TOKEN=s3cret" {
		t.Errorf("args %q env %q", args, env)
	}
	if args, env := ParseCmdline("console=ttyS0").AgentArgs(); args != nil || env != nil {
		t.Errorf("without mb.socktop: args %q env %q", args, env)
	}
}
