package vmhost

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mbvm/mb/internal/atomicfile"
	"github.com/mbvm/mb/internal/layout"
)

// ExitRecordName is the file vmhost writes into the VM directory before it
// exits.
const ExitRecordName = layout.ExitRecord

// ExitRecord says how a vmhost and its VM ended. A daemon that did not spawn
// the vmhost learns from it why the VM ended; a free vmhost.lock with no
// record newer than the vmhost's start means vmhost itself was killed.
type ExitRecord struct {
	Time      time.Time `json:"time"`
	StartedAt time.Time `json:"started_at,omitempty"`
	PID       int       `json:"pid"`
	// ExitCode is vmhost's exit code: 0 clean stop, 1 crash, 2 failed to
	// start.
	ExitCode int `json:"exit_code"`
	// StoppedBy names the stop phase for a requested stop ("agent", "acpi",
	// "quit", "kill", "graceful"), or "guest" for a guest power-off.
	StoppedBy string `json:"stopped_by,omitempty"`
	// Crashed is true when the VM or vmhost failed; Reason then says why.
	Crashed bool   `json:"crashed,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// WriteExitRecord writes dir/exit.json atomically.
func WriteExitRecord(dir string, rec ExitRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode exit record: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, ExitRecordName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write exit record: %w", err)
	}
	return nil
}

// ReadExitRecord reads dir/exit.json. A missing file returns an error
// satisfying errors.Is(err, os.ErrNotExist).
func ReadExitRecord(dir string) (*ExitRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, ExitRecordName))
	if err != nil {
		return nil, fmt.Errorf("read exit record: %w", err)
	}
	var rec ExitRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, ExitRecordName), err)
	}
	return &rec, nil
}
