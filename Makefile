# kubeup — see README.md. `make deps` installs everything the other targets need.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X kubeup.dev/kubeup/cmd/internal/cli.Version=$(VERSION)

# Debian packages the build, the tests and the local target use.
DEB_PACKAGES := \
	ca-certificates openssl git gcc libc6-dev libseccomp-dev pkg-config \
	systemd cloud-init genisoimage xorriso \
	qemu-system-x86 qemu-utils ovmf seabios vde2 \
	mmdebstrap e2fsprogs dosfstools mtools fdisk gdisk zstd kmod tar \
	syslinux syslinux-common systemd-boot-efi openssh-client \
	busybox-static iproute2 iptables systemd-journal-remote \
	ipxe ipxe-qemu dnsmasq-base

.PHONY: all deps deps-apt build test test-short golden e2e e2e-metal e2e-ha drills conformance image-test images artifacts artifacts-smoke artifacts-test clean

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
	# grpcnotrace: gRPC (etcd's client on masters, containerd's API for the
	# registry mirror) would otherwise link x/net/trace and html/template,
	# megabytes of resident memory.
	CGO_ENABLED=0 $(GO) build -trimpath -tags grpcnotrace -ldflags "-s -w" -o bin/kubeup-agent ./cmd/kubeup-agent
	# The node image's agent: no etcd client (nodes have no etcd member).
	CGO_ENABLED=0 $(GO) build -trimpath -tags noetcd,grpcnotrace -ldflags "-s -w" -o bin/kubeup-agent-node ./cmd/kubeup-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/kubeup-probe ./cmd/kubeup-probe
	# The metal target's network-boot installer (the initrd's init).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/kubeup-installer ./cmd/kubeup-installer
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/kubeup-addons ./cmd/kubeup-addons
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/pulumi-resource-kubeup ./cmd/pulumi-resource-kubeup

# Unit, golden and real-tool tests; integration tests run when their inputs
# (cached artifacts, images) are present and skip with a reason otherwise.
test:
	$(GO) vet ./...
	$(GO) test ./...
	# The node image's agent build (no etcd client) has its own tests.
	$(GO) vet -tags noetcd ./daemons/agent/
	$(GO) test -tags noetcd ./daemons/agent/
	# kubeup-probe is built without cgo, and drops its privileges only so
	# (syscall.AllThreadsSyscall): its privilege tests skip with cgo.
	CGO_ENABLED=0 $(GO) test ./daemons/probe/

test-short:
	$(GO) test -short ./...

# Rewrites every golden file (testdata/*.golden); review the diff after.
golden:
	$(GO) test -short $$($(GO) list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... | awk '/kubeup.dev\/kubeup\/test\/golden/ {print $$1}') -update

# End to end: images, a local cluster through Pulumi, every check, down, and
# nothing left behind; on the way, make drills' kill -9 of the API server
# (the node's reboot is make drills'). Sized for TCG on 2 cores (~25 min).
e2e: build
	KUBEUP_E2E=1 $(GO) test -count=1 -timeout 80m -v -run TestE2E ./test/e2e/

# The metal target: blank QEMU machines in a network namespace network-boot
# behind dnsmasq (UEFI and BIOS), install and join; one boots from a disk
# kubeup metal disk wrote; one is reset with the boot server gone.
e2e-metal: build
	KUBEUP_E2E_METAL=1 $(GO) test -count=1 -timeout 90m -v -run TestE2EMetal ./test/metal/

# Three masters and a node: verify, then master-0 and later the etcd
# leader's master hard-stopped (QEMU quit) for 2 minutes each while a client
# writes through the host's endpoint and node-0 renews its Lease through its
# own; each started again by kubeup up. Report in out/ha/report.json.
e2e-ha: build
	KUBEUP_E2E_HA=1 $(GO) test -count=1 -timeout 120m -v -run TestE2EHA ./test/ha/

# Brings a 1+1 cluster up and breaks it: its leaves last 30 minutes, and the
# first drill waits until every certificate has been renewed without an
# outage; then kill -9 of every unit on each machine, reboots and hard resets
# one machine at a time and all together, then an etcd snapshot, a namespace
# deleted and the snapshot restored; the report (table and JSON) goes to
# out/drills. About 3 hours under TCG.
# KUBEUP_DRILLS_ONLY=cert-renewal,kill,reboot,reset,etcd-restore (or
# kill:MACHINE:UNIT) runs a subset; DRILLS_LEAF_LIFETIME= (empty) makes a
# cluster with the default lifetime, which skips cert-renewal.
DRILLS_LEAF_LIFETIME ?= 30m
drills: build
	KUBEUP_DRILLS=1 KUBEUP_DRILLS_LEAF_LIFETIME=$(DRILLS_LEAF_LIFETIME) $(GO) test -count=1 -timeout 240m -v -run TestDrills ./test/drills/

# Upstream's [Conformance] specs (e2e.test v1.37.2 with ginkgo) against a
# 1-master, 2-node cluster with the heavy addons off: builds the suite and
# its images on first use (about 30 min, cached), loads the images into
# every machine, runs each part and writes JUnit reports and summaries to
# out/conformance. KUBEUP_CONFORMANCE_PARTS=sig-apps,sig-node:serial,...
# runs SIGs' specs only; KUBEUP_CONFORMANCE_CLUSTER=DIR (with _KEY) uses a
# running cluster; KUBEUP_CONFORMANCE_PROCS (2), _NODES (2).
conformance: build
	bin/kubeup artifacts --only conformance
	KUBEUP_CONFORMANCE=1 $(GO) test -count=1 -timeout 720m -v -run TestConformance ./test/conformance/

# Builds both images (cached) and boots them under QEMU: the master by UEFI,
# the node by BIOS (KUBEUP_IMAGE_TEST_ALL=1: each image by both firmwares).
image-test: build
	KUBEUP_E2E=1 $(GO) test -count=1 -timeout 60m -v -run TestE2EImage ./images/build/

artifacts: build
	bin/kubeup artifacts

# Imports the container images with the built containerd and runs them.
artifacts-smoke: artifacts
	hack/artifacts-smoke.sh

artifacts-test: artifacts
	KUBEUP_ARTIFACTS_TEST=1 $(GO) test -run 'TestIntegration' -count=1 -v ./images/...

clean:
	rm -rf bin out
