package main

import (
	"fmt"
	"io"
	"time"
)

// progress is mb start's one-line display: shown only on a terminal,
// rewritten in place, erased when done.
type progress struct {
	w      io.Writer
	on     bool
	name   string
	begin  time.Time
	shown  bool
	frames []string
	n      int
}

func newProgress(w io.Writer, name string) *progress {
	return &progress{w: w, on: isTerminal(w), name: name, begin: time.Now(),
		frames: []string{"|", "/", "-", "\\"}}
}

// set shows the current step.
func (p *progress) set(step string) {
	if !p.on {
		return
	}
	p.n++
	fmt.Fprintf(p.w, "\r\033[K%s %s: %s (%.1fs)", p.frames[p.n%len(p.frames)], p.name, step, time.Since(p.begin).Seconds())
	p.shown = true
}

// done erases the line.
func (p *progress) done() {
	if p.on && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
