// Package repocheck holds tests about the repository as a whole rather than
// about one package: that imports follow the layering of the design (see
// TestLayering), and that `make test` runs what it claims to. It has no
// code of its own.
package repocheck
