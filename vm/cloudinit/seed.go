package cloudinit

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// VolumeLabel is the volume identifier cloud-init's NoCloud looks for.
const VolumeLabel = "cidata"

// SeedFile is the seed ISO's file name inside the VM directory.
const SeedFile = "seed.iso"

// Seed is the rendered content of a NoCloud seed.
type Seed struct {
	UserData      []byte
	MetaData      []byte
	NetworkConfig []byte
}

// Render renders the seed's three files from c.
func Render(c Config) (*Seed, error) {
	ud, err := UserData(c)
	if err != nil {
		return nil, err
	}
	return &Seed{UserData: ud, MetaData: MetaData(c, ud), NetworkConfig: NetworkConfig(c)}, nil
}

// WriteSeed renders c and writes the seed ISO to path atomically: an error
// leaves no file behind and an existing seed untouched.
func WriteSeed(path string, c Config) error {
	s, err := Render(c)
	if err != nil {
		return err
	}
	return s.WriteISO(path)
}

// WriteISO writes the seed as an ISO 9660 image with Rock Ridge names
// user-data, meta-data and network-config and the volume label cidata.
// The ISO is built beside path and renamed over it when complete.
func (s *Seed) WriteISO(path string) error {
	dir := filepath.Dir(path)
	work, err := os.MkdirTemp(dir, ".seed-work-*")
	if err != nil {
		return fmt.Errorf("build cloud-init seed %s: %w", path, err)
	}
	defer os.RemoveAll(work)
	tmpPath := filepath.Join(work, "seed.iso")
	f, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("build cloud-init seed %s: %w", path, err)
	}
	if err := s.writeTo(f, filepath.Join(work, "tree")); err != nil {
		f.Close()
		return fmt.Errorf("build cloud-init seed %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("build cloud-init seed %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("build cloud-init seed %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fmt.Errorf("build cloud-init seed %s: %w", path, err)
	}
	return nil
}

func (s *Seed) writeTo(f *os.File, tree string) error {
	if err := os.Mkdir(tree, 0o700); err != nil {
		return err
	}
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, 2048, tree)
	if err != nil {
		return fmt.Errorf("create ISO 9660 filesystem: %w", err)
	}
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"user-data", s.UserData},
		{"meta-data", s.MetaData},
		{"network-config", s.NetworkConfig},
	} {
		w, err := fsys.OpenFile(e.name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("add %s: %w", e.name, err)
		}
		if _, err := w.Write(e.data); err != nil {
			w.Close()
			return fmt.Errorf("add %s: %w", e.name, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("add %s: %w", e.name, err)
		}
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: VolumeLabel}); err != nil {
		return fmt.Errorf("finalize ISO: %w", err)
	}
	return nil
}
