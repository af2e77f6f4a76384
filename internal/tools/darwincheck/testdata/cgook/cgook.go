//go:build darwin && cgo

// Package cgook uses cgo itself: darwincheck must accept it (C is faked)
// and report nothing.
package cgook

/*
static int twice(int x) { return 2 * x; }
*/
import "C"

// Twice calls into C.
func Twice(x int) int { return int(C.twice(C.int(x))) }
