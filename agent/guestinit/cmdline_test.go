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

func TestCmdlineReporters(t *testing.T) {
	c := ParseCmdline("console=ttyS0 mb.register=http://10.0.2.2:8080 mb.register_interval=2 mb.register_token=tok " +
		"mb.heartbeat=10.0.2.2:50003,monitor mb.heartbeat_interval=1s mb.heartbeat_key=k mb.heartbeat_name=hb1")
	rs := c.Reporters("ens3")
	want := []Reporter{
		{Name: "register", Args: []string{"register", "--api", "http://10.0.2.2:8080", "--interface", "ens3", "--interval", "2"}, Env: []string{"MB_REGISTER_TOKEN=tok"}},
		{Name: "heartbeat", Args: []string{"heartbeat", "-b", "--interval", "1s", "-n", "hb1", "10.0.2.2:50003", "monitor"}, Env: []string{"MB_HEARTBEAT_KEY=k"}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Errorf("Reporters:\n got %+v\nwant %+v", rs, want)
	}
	if rs := ParseCmdline("mb.register=http://h").Reporters(""); len(rs) != 1 || rs[0].Args[4] != "eth0" {
		t.Errorf("without a configured interface: %+v", rs)
	}
	if rs := ParseCmdline("console=ttyS0").Reporters("eth0"); rs != nil {
		t.Errorf("without mb.register/mb.heartbeat: %+v", rs)
	}
}
