package main

import "testing"

func TestRunRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, 0},
		{[]string{"--role=init"}, 2},
		{[]string{"--log-level=loud"}, 2},
		{[]string{"--no-such-flag"}, 2},
	} {
		if got := run(c.args); got != c.want {
			t.Errorf("run(%q) = %d, want %d", c.args, got, c.want)
		}
	}
}
