# kubeup — see README.md. `make deps` installs everything the other targets need.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X kubeup.dev/kubeup/cmd/kubeup/app.Version=$(VERSION)

# Debian packages the build, the tests and the local target use.
DEB_PACKAGES := \
	ca-certificates openssl git gcc libc6-dev libseccomp-dev pkg-config \
	systemd cloud-init genisoimage xorriso \
	qemu-system-x86 qemu-utils ovmf seabios vde2 \
	mmdebstrap e2fsprogs dosfstools mtools fdisk gdisk zstd \
	busybox-static

.PHONY: all deps deps-apt build test test-short e2e image-test artifacts artifacts-test clean

all: build

deps: deps-apt build
	bin/kubeup artifacts

# Installs only what is missing, so a second run takes a second.
deps-apt:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/kubeup ./cmd/kubeup

# Unit, golden and real-tool tests; integration tests run when their inputs
# (cached artifacts, images) are present and skip with a reason otherwise.
test:
	$(GO) vet ./...
	$(GO) test ./...

test-short:
	$(GO) test -short ./...

artifacts: build
	bin/kubeup artifacts

artifacts-test: artifacts
	KUBEUP_ARTIFACTS_TEST=1 $(GO) test -run 'TestIntegration' -count=1 -v ./images/...

clean:
	rm -rf bin out
