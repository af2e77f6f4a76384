package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/spec"
)

// optValue returns the value after each occurrence of flag in args.
func optValues(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestBuildArgs(t *testing.T) {
	base := bootConfig{
		Name: "dev-1", Dir: "/vms/dev-1", Arch: archX86_64, Accel: spec.AccelTCG,
		CPUs: 2, MemoryMiB: 512,
		Kernel: "/img/vmlinuz", Initrd: "/img/initrd", Cmdline: "console=ttyS0 mb.hostname=dev-1",
		SSHPort: 2222,
	}
	tests := []struct {
		name   string
		modify func(c *bootConfig)
		// want maps a flag to values that must all appear after it.
		want map[string][]string
		// absent lists flags that must not appear.
		absent []string
	}{
		{
			name: "x86_64 tcg kernel boot",
			want: map[string][]string{
				"-machine": {"q35"},
				"-accel":   {"tcg,thread=multi"},
				"-smp":     {"2"},
				"-m":       {"512"},
				"-kernel":  {"/img/vmlinuz"},
				"-initrd":  {"/img/initrd"},
				"-append":  {"console=ttyS0 mb.hostname=dev-1"},
				"-pidfile": {"/vms/dev-1/qemu.pid"},
				"-serial":  {"chardev:console"},
				"-mon":     {"chardev=qmp,mode=control"},
				"-action":  {"panic=exit-failure"},
				"-chardev": {
					"socket,id=qmp,path=/vms/dev-1/qmp.sock,server=on,wait=off",
					"socket,id=console,path=/vms/dev-1/console.sock,server=on,wait=off,logfile=/vms/dev-1/serial.log,logappend=on",
					"socket,id=agent,path=/vms/dev-1/agent.sock,server=on,wait=off",
				},
				"-device": {
					"pvpanic",
					"virtio-net-pci,netdev=net0,romfile=",
					"virtio-serial-pci,id=vser0",
					"virtserialport,bus=vser0.0,chardev=agent,name=org.qemu.guest_agent.0",
					"virtio-rng-pci,rng=rng0",
				},
				"-netdev": {"user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22"},
			},
			absent: []string{"-cpu", "-drive"},
		},
		{
			name:   "x86_64 kvm uses the host CPU",
			modify: func(c *bootConfig) { c.Accel = spec.AccelKVM },
			want:   map[string][]string{"-accel": {"kvm"}, "-cpu": {"host"}, "-machine": {"q35"}},
		},
		{
			name:   "aarch64 hvf",
			modify: func(c *bootConfig) { c.Arch, c.Accel = archAArch64, spec.AccelHVF },
			want:   map[string][]string{"-machine": {"virt"}, "-accel": {"hvf"}, "-cpu": {"host"}, "-device": {"pvpanic-pci"}},
		},
		{
			name:   "aarch64 tcg emulates the max CPU",
			modify: func(c *bootConfig) { c.Arch = archAArch64 },
			want:   map[string][]string{"-machine": {"virt"}, "-accel": {"tcg,thread=multi"}, "-cpu": {"max"}},
		},
		{
			name: "forwards bind 127.0.0.1 only",
			modify: func(c *bootConfig) {
				c.Forwards = []spec.Forward{{Host: 8080, Guest: 80, Proto: "tcp"}, {Host: 5353, Guest: 53, Proto: "udp"}, {Host: 9000, Guest: 9000}}
			},
			want: map[string][]string{"-netdev": {"user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53,hostfwd=tcp:127.0.0.1:9000-:9000"}},
		},
		{
			name: "disk boot with UEFI firmware",
			modify: func(c *bootConfig) {
				c.Kernel, c.Initrd, c.Cmdline = "", "", ""
				c.Drives = []disk.Drive{{Path: "/vms/dev-1/disk.qcow2", Format: "qcow2"}}
				c.FirmwareCode, c.FirmwareVars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/vms/dev-1/efi-vars.fd"
			},
			want: map[string][]string{
				"-drive": {
					"if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
					"if=pflash,format=raw,unit=1,file=/vms/dev-1/efi-vars.fd",
					"file=/vms/dev-1/disk.qcow2,if=virtio,format=qcow2,discard=unmap,detect-zeroes=unmap",
				},
			},
			absent: []string{"-kernel", "-initrd", "-append"},
		},
		{
			name:   "commas in paths are escaped",
			modify: func(c *bootConfig) { c.Dir = "/vms/a,b" },
			want: map[string][]string{
				"-chardev": {
					"socket,id=qmp,path=/vms/a,,b/qmp.sock,server=on,wait=off",
					"socket,id=console,path=/vms/a,,b/console.sock,server=on,wait=off,logfile=/vms/a,,b/serial.log,logappend=on",
				},
				"-pidfile": {"/vms/a,b/qemu.pid"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			if tt.modify != nil {
				tt.modify(&c)
			}
			args := buildArgs(&c)
			for _, flag := range []string{"-nodefaults", "-nographic"} {
				if !slices.Contains(args, flag) {
					t.Errorf("%s missing from %q", flag, args)
				}
			}
			for flag, values := range tt.want {
				got := optValues(args, flag)
				for _, v := range values {
					if !slices.Contains(got, v) {
						t.Errorf("%s %q missing; got %s %q", flag, v, flag, got)
					}
				}
			}
			for _, flag := range tt.absent {
				if got := optValues(args, flag); len(got) > 0 {
					t.Errorf("unexpected %s %q", flag, got)
				}
			}
			if strings.Contains(strings.Join(args, " "), "0.0.0.0") {
				t.Errorf("a forward binds beyond 127.0.0.1: %q", args)
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		arch                    arch
		base, extra, host, want string
	}{
		{archX86_64, "console=ttyS0 quiet", "", "vm1", "console=ttyS0 quiet mb.hostname=vm1"},
		{archX86_64, "console=ttyS0", " mb.selftest=poweroff ", "a-b", "console=ttyS0 mb.selftest=poweroff mb.hostname=a-b"},
		{archX86_64, "", "quiet", "x", "quiet mb.hostname=x"},
		// No command line at all: the platform's serial console.
		{archX86_64, "", " ", "x", "console=ttyS0 mb.hostname=x"},
		{archAArch64, "", "", "x", "console=ttyAMA0 mb.hostname=x"},
	}
	for _, tt := range tests {
		if got := kernelCmdline(tt.arch, tt.base, tt.extra, tt.host); got != tt.want {
			t.Errorf("kernelCmdline(%s, %q, %q, %q) = %q, want %q", tt.arch, tt.base, tt.extra, tt.host, got, tt.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out  string
		want qemuVersion
		ok   bool
	}{
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright", qemuVersion{7, 2, 22}, true},
		{"QEMU emulator version 9.1.0\n", qemuVersion{9, 1, 0}, true},
		{"QEMU emulator version 8.0\n", qemuVersion{8, 0, 0}, true},
		{"something else\n", qemuVersion{}, false},
	}
	for _, tt := range tests {
		got, err := parseVersion([]byte(tt.out))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, ok=%v", tt.out, got, err, tt.want, tt.ok)
		}
	}
	if !(qemuVersion{7, 1, 0}).atLeast(7, 1) || (qemuVersion{7, 0, 9}).atLeast(7, 1) || !(qemuVersion{8, 0, 0}).atLeast(7, 1) {
		t.Error("atLeast compares wrongly")
	}
}
