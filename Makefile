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
# Everything the tests and the demo need.
DEB_PKGS := $(QEMU_PKG) qemu-utils busybox-static cpio socat

# Packages whose tests boot real VMs: run one package at a time so the
# 2-core machine never runs several TCG guests from different packages.
VM_PKGS  := ./guestinit/... ./backend/qemu/... ./daemon/... ./cmd/mb/...
# Short fuzz runs in `make test`: package:target.
FUZZ     := ./vmhost:FuzzDecodeRequest
FUZZTIME ?= 10s
TEST_TIMEOUT ?= 25m

.PHONY: all deps build image test vet fuzz demo bench chaos clean

all: build

deps:
	@./scripts/deps.sh $(DEB_PKGS)

build:
	$(GO) build -trimpath -o $(BIN)/ ./cmd/mb ./cmd/vmhost
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/mb-agent ./cmd/mb-agent

# The mini image: Debian cloud kernel + busybox + mb-agent as PID 1, in
# $$MB_HOME/images/mini (default ~/.mb). Downloads are cached in
# /var/cache/mb (override with MB_CACHE).
image: deps
	./scripts/mkimage-mini.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

fuzz:
	@for ft in $(FUZZ); do \
		pkg=$${ft%%:*}; fn=$${ft##*:}; \
		echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

test: deps image build vet
	MB_REQUIRE_VM=1 $(GO) test -race -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v -E '/(guestinit|backend/qemu|daemon|cmd/mb)(/|$$)')
	MB_REQUIRE_VM=1 $(GO) test -race -p 1 -timeout $(TEST_TIMEOUT) $(VM_PKGS)
	$(MAKE) --no-print-directory fuzz

demo: deps image build
	./scripts/demo.sh

bench: deps image build
	$(GO) run ./bench

chaos: deps image build
	MB_CHAOS=1 $(GO) test -race -p 1 -timeout 60m -run Chaos ./bench/...

clean:
	rm -rf $(BIN)
