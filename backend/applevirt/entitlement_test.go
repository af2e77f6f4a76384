package applevirt

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestHasEntitlement(t *testing.T) {
	cases := []struct {
		name, out string
		want      bool
	}{
		{"text form", "Executable=/x/vmhost\n[Dict]\n\t[Key] com.apple.security.virtualization\n\t[Value]\n\t\t[Bool] true\n", true},
		{"text form false", "Executable=/x/vmhost\n[Dict]\n\t[Key] com.apple.security.virtualization\n\t[Value]\n\t\t[Bool] false\n", false},
		{"text form other key", "[Dict]\n\t[Key] com.apple.security.hypervisor\n\t[Value]\n\t\t[Bool] true\n", false},
		{"xml", "Executable=/x/vmhost\n\xfa\xde\x71\x71\x00\x00\x01\x10<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n\t<key>com.apple.security.virtualization</key>\n\t<true/>\n</dict>\n</plist>\n", true},
		{"xml false", "<plist><dict><key>com.apple.security.virtualization</key><false/></dict></plist>", false},
		{"xml other then ours false", "<dict><key>com.apple.security.network.client</key><true/><key>com.apple.security.virtualization</key><false/></dict>", false},
		{"no entitlements", "Executable=/x/vmhost\n", false},
		{"prefixed key", "[Key] com.apple.security.virtualization.extra\n[Value]\n[Bool] true\n", false},
	}
	for _, tc := range cases {
		if got := HasEntitlement([]byte(tc.out), VirtualizationEntitlement); got != tc.want {
			t.Errorf("%s: HasEntitlement = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEntitlementsFile: the plist make sign uses grants the entitlement.
func TestEntitlementsFile(t *testing.T) {
	data, err := readRepoFile("vmhost.entitlements")
	if err != nil {
		t.Fatal(err)
	}
	if !HasEntitlement(data, VirtualizationEntitlement) {
		t.Fatalf("vmhost.entitlements does not grant %s", VirtualizationEntitlement)
	}
}

// TestCheckEntitlementWithoutCodesign: where codesign is missing (Linux),
// the check says what to install instead of failing obscurely.
func TestCheckEntitlementWithoutCodesign(t *testing.T) {
	if _, err := exec.LookPath("codesign"); err == nil || runtime.GOOS == "darwin" {
		t.Logf("codesign is present: the missing-codesign message is not reachable here")
		return
	}
	err := CheckEntitlement(context.Background(), "/usr/local/bin/vmhost")
	if err == nil || !strings.Contains(err.Error(), "xcode-select --install") {
		t.Fatalf("CheckEntitlement without codesign: %v", err)
	}
}

func TestEntitlementFixMessage(t *testing.T) {
	err := entitlementFix("/opt/mb/vmhost", "is not signed")
	for _, want := range []string{"/opt/mb/vmhost is not signed", "make sign", "codesign --sign - --force --entitlements " + EntitlementsFile + " /opt/mb/vmhost"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("fix message %q lacks %q", err, want)
		}
	}
}

func readRepoFile(name string) ([]byte, error) { return os.ReadFile(name) }
