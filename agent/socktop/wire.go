package socktop

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of socktop's process list (socktoppb/socktop.proto).
const (
	fieldProcessCount = 1 // Processes.process_count, uint64
	fieldRows         = 2 // Processes.rows, repeated Process
	fieldPID          = 1 // Process.pid, uint32
	fieldName         = 2 // Process.name, string
	fieldCPUUsage     = 3 // Process.cpu_usage, float
	fieldMemBytes     = 4 // Process.mem_bytes, uint64
)

// encodeProcesses encodes the process list as socktop's protobuf message
// Processes. It writes the wire format directly with protowire rather than
// through the generated socktoppb types: the bytes are the same (the tests
// decode them with socktoppb), and mb-agent, which runs in every mini
// guest, does not link the protobuf runtime. Zero values are left out, as
// proto3 does.
func encodeProcesses(ps []ProcessInfo) []byte {
	var b, row []byte
	if len(ps) > 0 {
		b = protowire.AppendTag(b, fieldProcessCount, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(len(ps)))
	}
	for _, p := range ps {
		row = row[:0]
		if p.PID != 0 {
			row = protowire.AppendTag(row, fieldPID, protowire.VarintType)
			row = protowire.AppendVarint(row, uint64(p.PID))
		}
		if p.Name != "" {
			row = protowire.AppendTag(row, fieldName, protowire.BytesType)
			row = protowire.AppendString(row, p.Name)
		}
		if p.CPUUsage != 0 {
			row = protowire.AppendTag(row, fieldCPUUsage, protowire.Fixed32Type)
			row = protowire.AppendFixed32(row, math.Float32bits(p.CPUUsage))
		}
		if p.MemBytes != 0 {
			row = protowire.AppendTag(row, fieldMemBytes, protowire.VarintType)
			row = protowire.AppendVarint(row, p.MemBytes)
		}
		b = protowire.AppendTag(b, fieldRows, protowire.BytesType)
		b = protowire.AppendBytes(b, row)
	}
	return b
}
