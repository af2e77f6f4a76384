# mb — build, test and demo. `make demo` and `make test` install what is
# missing (Debian packages through scripts/deps.sh), so they work on a fresh
# Debian machine.

GO       ?= go
BIN      := bin
ARCH     := $(shell uname -m)
ifeq ($(ARCH),aarch64)
QEMU_PKG := qemu-system-arm
else
QEMU_PKG := qemu-system-x86
endif
# Everything the tests and the demo need: QEMU and qemu-img; busybox and
# cpio for the mini image; the stock guest agent for the compatibility
# image; UEFI firmware, ssh, mkfs.ext4 and debootstrap for disk images and
# the Debian test image; socat for the documented one-liners; systemd for
# `systemd-analyze verify` of the unit `mb service install` writes;
# prometheus-alertmanager and python3-aiosmtpd for the monitor's
# alertmanager and email channel tests; prometheus (and its promtool) to
# scrape and lint the monitor's /metrics; python3-websockets for an
# independent client of mb-agent's socktop server; protobuf-compiler for
# `make proto`; chromium for the dashboard's browser tests; bind9 and bind9-dnsutils (dig, nsupdate) for the monitor's
# dynamic DNS test against a real name server; curl to run the served install.sh.
DEB_PKGS := $(QEMU_PKG) qemu-utils busybox-static cpio socat qemu-guest-agent \
	ovmf openssh-client e2fsprogs util-linux debootstrap systemd \
	prometheus-alertmanager python3-aiosmtpd prometheus python3-websockets protobuf-compiler \
	bind9 bind9-dnsutils curl chromium

# Packages whose tests boot real VMs: run one package at a time so the
# 2-core machine never runs several TCG guests from different packages.
VM_PKGS  := ./agent/guestinit/... ./backend/qemu/... ./vm/disk/... ./daemon/... ./cmd/mb/... ./failtest/... ./bench/...
VM_PKG_RE := /(agent/guestinit|backend/qemu|vm/disk|daemon|cmd/mb|failtest|bench)(/|$$)
# Fuzz targets (package:target), run briefly by `make test`. The budget is a
# count of executions, not a duration: with a duration, Go 1.26's fuzzing
# coordinator can report a spurious "context deadline exceeded" at the end
# of the window on a loaded machine (golang/go#75804, fixed in Go 1.27).
# Longer runs: `FUZZTIME=5000000x make fuzz`.
FUZZ     := ./vmhost:FuzzDecodeRequest ./agent:FuzzRequestParser ./agent/cmdsock:FuzzReadRequest ./agent/qga:FuzzReplyParser ./agent/qgaproto:FuzzParseExecInput ./vm/disk:FuzzQcow2References ./internal/safetext:FuzzClean
FUZZTIME ?= 50000x
TEST_TIMEOUT ?= 25m
# What `mb version` prints: the git revision (dev outside a checkout).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# mb-agent needs no HTTP/2 (socktop's WebSocket and the register client
# speak HTTP/1.1): without net/http's bundled HTTP/2 it is 0.55 MB smaller,
# which the mini image's initramfs holds in the guest's RAM.
# scripts/mkimage-mini.sh builds it with the same tag.
AGENT_TAGS := nethttpomithttp2

.PHONY: all deps build proto image debian-image test vet sign fuzz demo bench chaos clean screenshots

all: build

deps:
	@./scripts/deps.sh $(DEB_PKGS)

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN)/ ./cmd/mb ./cmd/vmhost
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(AGENT_TAGS) -o $(BIN)/mb-agent ./cmd/mb-agent
	# The monitor serves these at /download/ for install.sh on other machines.
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -tags $(AGENT_TAGS) -o $(BIN)/mb-agent-linux-amd64 ./cmd/mb-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags $(AGENT_TAGS) -o $(BIN)/mb-agent-linux-arm64 ./cmd/mb-agent

# Regenerate the protobuf code (committed) from its .proto files: protoc
# from Debian's protobuf-compiler, protoc-gen-go built at the version go.mod
# pins, so the generated code matches the runtime.
PROTOS := agent/socktop/socktoppb/socktop.proto
proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	for p in $(PROTOS); do protoc --plugin=protoc-gen-go=$(BIN)/protoc-gen-go --go_out=. --go_opt=paths=source_relative $$p || exit 1; done

# The mini image: Debian cloud kernel + busybox + mb-agent as PID 1, in
# $$MB_HOME/images/mini (default ~/.mb). Downloads are cached in
# /var/cache/mb (override with MB_CACHE).
image: deps
	./scripts/mkimage-mini.sh
	./scripts/mkimage-mini.sh --variant qemu-ga

# The Debian bookworm image for the real-distribution test (systemd,
# cloud-init, sshd, qemu-guest-agent), cached in /var/cache/mb-test/debian
# (override with MB_CACHE). Needs root for debootstrap; about 1.5 minutes
# the first time, nothing afterwards.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
debian-image: deps
	$(SUDO) ./scripts/mkimage-debian.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	@# go vet with GOOS=darwin has cgo off and skips the cgo-only files (the
	@# applevirt backend's vz adapter); darwincheck type-checks them too.
	$(GO) run ./internal/tools/darwincheck -arch arm64,amd64 ./...

# macOS: sign vmhost ad hoc with the entitlement Apple's Virtualization
# framework requires (the applevirt backend runs VMs inside vmhost).
sign: build
	@test "$$(uname -s)" = Darwin || { echo "make sign: signing is for macOS (codesign); nothing to do on $$(uname -s)"; exit 1; }
	codesign --sign - --force --entitlements backend/applevirt/vmhost.entitlements $(BIN)/vmhost
	codesign -d --entitlements - $(BIN)/vmhost

fuzz:
	@for ft in $(FUZZ); do \
		pkg=$${ft%%:*}; fn=$${ft##*:}; \
		echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -timeout 10m $$pkg || exit 1; \
	done

# Every run is -count=1: tests in failtest, daemon and cmd/mb build the
# binaries they drive at run time, so a cached "ok" could hide a change to
# those binaries. Each go test run goes through internal/tools/testsum, which
# prints the failures and counts passes and skips; the last line adds the
# runs up, lists every skipped test, and fails on any skip, because make test
# installs everything a test needs (internal/testenv is the one skip rule).
TESTRUN  := $(BIN)/testrun
TESTSUM  := $(BIN)/testsum
test: deps image debian-image build vet
	@rm -rf $(TESTRUN) && mkdir -p $(TESTRUN)
	$(GO) build -o $(TESTSUM) ./internal/tools/testsum
	{ MB_REQUIRE_VM=1 $(GO) test -count=1 -json -race -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v -E '$(VM_PKG_RE)'); \
		echo $$? > $(TESTRUN)/unit.rc; } | $(TESTSUM) -record $(TESTRUN)/unit.json -rc $(TESTRUN)/unit.rc
	{ MB_REQUIRE_VM=1 $(GO) test -count=1 -json -race -p 1 -timeout $(TEST_TIMEOUT) $(VM_PKGS); \
		echo $$? > $(TESTRUN)/vm.rc; } | $(TESTSUM) -record $(TESTRUN)/vm.json -rc $(TESTRUN)/vm.rc
	$(MAKE) --no-print-directory fuzz
	@$(TESTSUM) -total -no-skips $(TESTRUN)/unit.json $(TESTRUN)/vm.json

# The dashboard's screenshots in docs/screenshots (the README shows them),
# taken by its browser test.
screenshots: deps image
	MB_REQUIRE_VM=1 MB_SCREENSHOTS=1 $(GO) test -count=1 -timeout 20m -run TestDashboardInBrowser ./daemon/

demo: deps image build
	./scripts/demo.sh

bench: deps image debian-image build
	$(GO) run ./bench

chaos: deps image build
	MB_CHAOS=1 $(GO) test -count=1 -race -p 1 -timeout 60m -run 'Endurance' ./failtest/...

clean:
	rm -rf $(BIN)
