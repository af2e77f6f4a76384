package disk

import (
	"strings"
	"testing"
)

func TestDriveArgs(t *testing.T) {
	tests := []struct {
		name   string
		drives []Drive
		want   string
	}{
		{"none", nil, ""},
		{"disk and seed", []Drive{
			{Path: "/h/vms/deb/disk.qcow2", Format: "qcow2"},
			{Path: "/h/vms/deb/seed.iso", Format: "raw", ReadOnly: true},
		}, "-drive file=/h/vms/deb/disk.qcow2,if=virtio,format=qcow2,discard=unmap,detect-zeroes=unmap " +
			"-drive file=/h/vms/deb/seed.iso,if=virtio,format=raw,readonly=on"},
		{"comma in path", []Drive{{Path: "/a,b/disk.qcow2", Format: "qcow2"}},
			"-drive file=/a,,b/disk.qcow2,if=virtio,format=qcow2,discard=unmap,detect-zeroes=unmap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(DriveArgs(tc.drives...), " "); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestPflashArgs(t *testing.T) {
	got := strings.Join(PflashArgs("/usr/share/OVMF/OVMF_CODE_4M.fd", "/h/vms/x,y/efi-vars.fd"), " ")
	want := "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd " +
		"-drive if=pflash,format=raw,unit=1,file=/h/vms/x,,y/efi-vars.fd"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
