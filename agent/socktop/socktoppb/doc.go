// Package socktoppb holds the protobuf messages of socktop's process list,
// generated from socktop.proto by `make proto` (protoc from Debian's
// protobuf-compiler, protoc-gen-go at the version in go.mod).
package socktoppb
