package service

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/mbvm/mb/internal/atomicfile"
)

// ConfigBackupDir is the directory under the state directory that keeps
// the configurations replaced through the API.
const ConfigBackupDir = "config-backups"

// configBackupsKept bounds the backups kept; the oldest go first.
const configBackupsKept = 50

// redactedMark is what the config API shows for a secret. A configuration
// that still contains it is refused: writing it would replace a secret
// with the placeholder.
const redactedMark = "<redacted>"

var backupName = regexp.MustCompile(`^monitor-\d{8}T\d{6}\.\d{3}Z\.yaml$`)

// postConfig replaces monitor.yaml with the body (YAML), after checking it
// as a reload would and keeping the old file as a backup; then puts it in
// force.
func (s *Service) postConfig(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) || !requireAdmin(w, r, "changing the configuration") {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil || len(body) > MaxBody {
		writeError(w, http.StatusBadRequest, fmt.Errorf("the configuration must be YAML of at most %d bytes", MaxBody))
		return
	}
	name, err := s.replaceConfig(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.record(r.Context(), "config change", s.Config().Path, "backup "+name)
	writeJSON(w, http.StatusOK, map[string]any{"applied": true, "backup": name})
}

// replaceConfig checks data, backs the current file up, writes data and
// reloads; the backup's name is returned.
func (s *Service) replaceConfig(data []byte) (string, error) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	path := s.Config().Path
	if path == "" {
		return "", errors.New("the configuration was not read from a file, so it cannot be replaced")
	}
	if strings.Contains(string(data), redactedMark) {
		return "", fmt.Errorf("the configuration contains %q where a secret was: put the secret itself (the API never returns one, and will not write the placeholder)", redactedMark)
	}
	cfg, err := ParseConfig(data, path)
	if err != nil {
		return "", fmt.Errorf("refused, nothing changed: %w", err)
	}
	if _, err := prepare(cfg); err != nil {
		return "", fmt.Errorf("refused, nothing changed: %w", err)
	}
	name, err := s.backupConfig(path)
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := s.Reload(path); err != nil {
		return name, fmt.Errorf("%s was written but not put in force (%v); roll back with POST /api/0/config/rollback {\"backup\": %q}", path, err, name)
	}
	return name, nil
}

// backupConfig copies the file at path into the backup directory.
func (s *Service) backupConfig(path string) (string, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s for its backup: %w", path, err)
	}
	dir := filepath.Join(s.stateDir, ConfigBackupDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := "monitor-" + s.clock().UTC().Format("20060102T150405.000Z") + ".yaml"
	if err := atomicfile.Write(filepath.Join(dir, name), old, 0o600); err != nil {
		return "", fmt.Errorf("writing the backup: %w", err)
	}
	names, _ := s.configBackups()
	for len(names) > configBackupsKept {
		_ = os.Remove(filepath.Join(dir, names[0]))
		names = names[1:]
	}
	return name, nil
}

// configBackups lists the backups, oldest first.
func (s *Service) configBackups() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.stateDir, ConfigBackupDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if backupName.MatchString(e.Name()) && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *Service) getConfigBackups(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) || !requireAdmin(w, r, "listing configuration backups") {
		return
	}
	names, err := s.configBackups()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	type backup struct {
		Name string    `json:"name"`
		Time time.Time `json:"time"`
	}
	out := []backup{}
	for i := len(names) - 1; i >= 0; i-- {
		t, _ := time.Parse("20060102T150405.000Z", strings.TrimSuffix(strings.TrimPrefix(names[i], "monitor-"), ".yaml"))
		out = append(out, backup{names[i], t})
	}
	writeJSON(w, http.StatusOK, map[string]any{"backups": out})
}

func (s *Service) postConfigRollback(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Backup string `json:"backup"`
	}
	if !decodeBody(w, r, &req) || !requireAdmin(w, r, "rolling the configuration back") {
		return
	}
	if !backupName.MatchString(req.Backup) {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`give "backup": a name from GET /api/0/config/backups`))
		return
	}
	data, err := os.ReadFile(filepath.Join(s.stateDir, ConfigBackupDir, req.Backup))
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no backup %q (see GET /api/0/config/backups)", req.Backup))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	name, err := s.replaceConfig(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.record(r.Context(), "config rollback", req.Backup, "backup "+name)
	writeJSON(w, http.StatusOK, map[string]any{"applied": true, "restored": req.Backup, "backup": name})
}
