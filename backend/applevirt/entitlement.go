package applevirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// VirtualizationEntitlement is the entitlement a process needs to use
// Apple's Virtualization framework; vmhost is signed with it (make sign).
const VirtualizationEntitlement = "com.apple.security.virtualization"

// EntitlementsFile is the property list make sign signs vmhost with,
// relative to the source tree.
const EntitlementsFile = "backend/applevirt/vmhost.entitlements"

// CheckEntitlement runs `codesign -d --entitlements - PATH` and says how to
// fix a binary that is unsigned or signed without the virtualization
// entitlement.
func CheckEntitlement(ctx context.Context, path string) error {
	cmd := exec.CommandContext(ctx, "codesign", "-d", "--entitlements", "-", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("cannot check %s for the %s entitlement: codesign not found (install Xcode's command line tools: xcode-select --install)", path, VirtualizationEntitlement)
	case errors.As(err, &ee) && strings.Contains(stderr.String(), "not signed"):
		return entitlementFix(path, "is not signed")
	case err != nil:
		return fmt.Errorf("check %s for the %s entitlement: codesign: %w: %s", path, VirtualizationEntitlement, err, strings.TrimSpace(stderr.String()))
	}
	// Older codesign versions print the entitlements on stderr.
	out := append(stdout.Bytes(), stderr.Bytes()...)
	if !HasEntitlement(out, VirtualizationEntitlement) {
		return entitlementFix(path, "is signed without the "+VirtualizationEntitlement+" entitlement")
	}
	return nil
}

func entitlementFix(path, problem string) error {
	return fmt.Errorf("%s %s, so macOS will not let it run VMs: in mb's source tree run make sign, or sign it yourself with\n  codesign --sign - --force --entitlements %s %s",
		path, problem, EntitlementsFile, shellQuote(path))
}

var (
	// The XML property list: <key>NAME</key> then <true/>.
	xmlTrueRE = `<key>\s*%s\s*</key>\s*<true\s*/>`
	// The text form of macOS 12 and later:
	//   [Key] NAME
	//   [Value]
	//     [Bool] true
	textTrueRE = `\[Key\]\s*%s\s*\[Value\]\s*\[Bool\]\s*true`
)

// HasEntitlement reports whether codesign's entitlement output (the XML
// property list, or the bracketed text form newer codesign prints) grants
// the boolean entitlement name.
func HasEntitlement(output []byte, name string) bool {
	q := regexp.QuoteMeta(name)
	for _, pat := range []string{xmlTrueRE, textTrueRE} {
		if regexp.MustCompile(fmt.Sprintf(pat, q)).Match(output) {
			return true
		}
	}
	return false
}
