package cloudinit

import "github.com/mbvm/mb/vm/spec"

// Share is a host folder share as the guest mounts it: the virtiofs tag and
// the mount point.
type Share struct {
	Tag, Path string
	ReadOnly  bool
}

// SharesOf lists a spec's shares with their tags.
func SharesOf(s *spec.Spec) []Share {
	var out []Share
	for i, sh := range s.Shares {
		out = append(out, Share{Tag: s.ShareTag(i), Path: sh.Guest, ReadOnly: sh.ReadOnly})
	}
	return out
}

// shareMounts is cloud-init's mounts list for the shares (nil for none):
// virtiofs by tag, nofail so that a missing share never stops the boot.
func shareMounts(shares []Share) []any {
	if len(shares) == 0 {
		return nil
	}
	var out []any
	for _, sh := range shares {
		opts := "defaults,nofail"
		if sh.ReadOnly {
			opts += ",ro"
		}
		out = append(out, []any{sh.Tag, sh.Path, "virtiofs", opts, "0", "0"})
	}
	return out
}
