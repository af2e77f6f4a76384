package failtest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/rig"
)

// suite is what TestMain prepares once for every test: the binaries and
// the image. It is written before any test runs and only read after.
var suite struct {
	bins   *rig.Binaries
	img    *rig.Image
	imgErr error
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	root, err := rig.ModuleRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "failtest:", err)
		return 1
	}
	dir, err := os.MkdirTemp("/tmp", "mbfbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "failtest: make a directory for the binaries:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := root
	if s := os.Getenv("FAILTEST_SRC"); s != "" {
		// Build the programs under test from another checkout (for example
		// an export of a commit) while the tree is being edited.
		src = s
	}
	suite.bins = rig.Build(ctx, src, dir)
	if suite.bins.VMHostErr != nil {
		fmt.Fprintln(os.Stderr, "failtest: vmhost does not build:", suite.bins.VMHostErr)
		return 1
	}
	suite.img, suite.imgErr = rig.FindImage("mini")
	return m.Run()
}
