package qemu

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"

	"github.com/mbvm/mb/vm/spec"
)

// AccelEnv overrides the accelerator for every VM: auto, kvm, hvf or tcg.
const AccelEnv = "MB_ACCEL"

// hostProbe is what accelerator detection looks at. Production code uses
// realHost; tests fill it by hand.
type hostProbe struct {
	goos string
	// kvmUsable reports whether /dev/kvm opens read-write, and why not.
	kvmUsable func() error
	// cpuinfo is the content of /proc/cpuinfo (nil when unreadable).
	cpuinfo []byte
	// moduleLoaded reports whether a kernel module is loaded.
	moduleLoaded func(name string) bool
}

// realHost probes the running machine.
func realHost() hostProbe {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	return hostProbe{
		goos: runtime.GOOS,
		kvmUsable: func() error {
			f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
			if err != nil {
				return err
			}
			return f.Close()
		},
		cpuinfo: cpuinfo,
		moduleLoaded: func(name string) bool {
			_, err := os.Stat("/sys/module/" + name)
			return err == nil
		},
	}
}

// accelChoice is the accelerator picked for a VM and why.
type accelChoice struct {
	Accel  spec.Accel
	Reason string
}

// chooseAccel resolves the accelerator: MB_ACCEL (env) wins over the spec,
// and "auto" (or nothing) is detected from the host.
func chooseAccel(specAccel spec.Accel, env string, h hostProbe) (accelChoice, error) {
	if env != "" {
		a, err := spec.ParseAccel(env)
		if err != nil {
			return accelChoice{}, fmt.Errorf("%s: %w", AccelEnv, err)
		}
		if a != spec.AccelAuto {
			return accelChoice{a, AccelEnv + "=" + env}, nil
		}
	} else if specAccel != "" && specAccel != spec.AccelAuto {
		return accelChoice{specAccel, "set in the VM spec"}, nil
	}
	return detectAccel(h), nil
}

// detectAccel implements "auto": hvf on macOS; kvm on Linux only when
// /dev/kvm opens read-write and the CPU has hardware virtualisation (vmx or
// svm in /proc/cpuinfo, or kvm_intel/kvm_amd loaded); tcg otherwise. Opening
// /dev/kvm alone is not enough: some hosts (kvm_pvm) offer a /dev/kvm that
// hangs real guests.
func detectAccel(h hostProbe) accelChoice {
	switch h.goos {
	case "darwin":
		return accelChoice{spec.AccelHVF, "auto: macOS has the Hypervisor framework"}
	case "linux":
	default:
		return accelChoice{spec.AccelTCG, "auto: no hardware accelerator supported on " + h.goos}
	}
	if err := h.kvmUsable(); err != nil {
		return accelChoice{spec.AccelTCG, fmt.Sprintf("auto: /dev/kvm is not usable (%v)", err)}
	}
	if flag := virtFlag(h.cpuinfo); flag != "" {
		return accelChoice{spec.AccelKVM, "auto: /dev/kvm is usable and the CPU has " + flag}
	}
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if h.moduleLoaded(m) {
			return accelChoice{spec.AccelKVM, "auto: /dev/kvm is usable and " + m + " is loaded"}
		}
	}
	return accelChoice{spec.AccelTCG, "auto: /dev/kvm opens but the CPU shows no vmx/svm and neither kvm_intel nor kvm_amd is loaded"}
}

// virtFlag returns "vmx" or "svm" when a flags line of cpuinfo has it.
func virtFlag(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(bytes.TrimSpace(name)) != "flags" {
			continue
		}
		for _, f := range bytes.Fields(value) {
			if s := string(f); s == "vmx" || s == "svm" {
				return s
			}
		}
	}
	return ""
}

// accelArg is the -accel option for an accelerator.
func accelArg(a spec.Accel) string {
	if a == spec.AccelTCG {
		return "tcg,thread=multi"
	}
	return string(a)
}
