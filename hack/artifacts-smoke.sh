#!/usr/bin/env bash
# Smoke test of the cached artifacts working together, on the host: starts the
# built containerd (private root, state and socket under a temp dir), imports
# the image tarballs with the built ctr as `ctr -n k8s.io images import` does
# at boot, and runs containers with the built shim and runc:
#   - testbox: busybox sh prints a line;
#   - pause: starts as its image user and exits 0 on SIGTERM;
#   - coredns: runs as its image user (65532), binds 127.0.0.77:53 through
#     the file capability in its image, and answers a query from testbox.
# Needs root (containerd, overlayfs). All traffic stays on 127.0.0.0/8; the
# containerd it starts is stopped by PID on exit.
#
# Usage: hack/artifacts-smoke.sh [cache dir]   (default: kubeup's cache)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "artifacts-smoke: needs root (containerd)" >&2; exit 2; }
cache=${1:-${KUBEUP_CACHE_DIR:-}}
json=$(mktemp)
trap 'rm -f "$json"' EXIT
go run ./cmd/kubeup artifacts ${cache:+--cache-dir "$cache"} --json >"$json"

# path COMPONENT FILE: absolute path of a file of a cached artifact.
path() { python3 - "$json" "$1" "$2" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
for a in s["artifacts"]:
    if a["kind"] == "component" and a["name"] == sys.argv[2]:
        print(a["dir"] + "/root/" + sys.argv[3]); break
else:
    sys.exit("no component " + sys.argv[2])
EOF
}
tarball() { python3 - "$json" "$1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
for a in s["artifacts"]:
    if a["kind"] == "image" and a["name"] == sys.argv[2]:
        print(a["dir"] + "/root/" + a["image"]["tarball"] + " " + a["image"]["ref"]); break
else:
    sys.exit("no image " + sys.argv[2])
EOF
}

work=$(mktemp -d /tmp/kubeup-smoke.XXXXXX)
bin=$work/bin
mkdir -p "$bin"
for f in containerd ctr containerd-shim-runc-v2; do ln -s "$(path containerd usr/local/bin/$f)" "$bin/$f"; done
ln -s "$(path runc usr/local/sbin/runc)" "$bin/runc"
export PATH="$bin:$PATH"
sock=$work/containerd.sock

containerd_pid=
cleanup() {
	[ -n "$containerd_pid" ] && kill "$containerd_pid" 2>/dev/null && wait "$containerd_pid" 2>/dev/null || true
	# Shims and containers were removed with --rm; unmount what is left.
	grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$work" "$json"
}
trap cleanup EXIT

cat >"$work/config.toml" <<EOF
version = 3
root = "$work/root"
state = "$work/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
EOF
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/containerd.log"; echo "containerd did not start" >&2; exit 1; }
# ctr warns on every call on a cgroup v1 host (as this project's machines are).
c() { ctr --address "$sock" -n k8s.io "$@" 2> >(grep -v "support for cgroup v1 is deprecated" >&2); }

for img in pause coredns testbox; do
	read -r tar ref <<<"$(tarball $img)"
	c images import "$tar" >/dev/null
	c images ls -q | grep -qx "$ref" || { echo "FAIL: $ref not imported" >&2; exit 1; }
	echo "ok   imported $ref"
	declare "ref_$img=$ref"
done

out=$(c run --rm "$ref_testbox" smoke-sh sh -c 'echo hello from $(uname -s) as $(id -u)')
[ "$out" = "hello from Linux as 0" ] || { echo "FAIL: testbox printed '$out'" >&2; exit 1; }
echo "ok   testbox runs: $out"

c run -d "$ref_pause" smoke-pause >/dev/null
sleep 1
c task kill -s SIGTERM smoke-pause
for _ in $(seq 50); do c task ls | grep -q "smoke-pause.*STOPPED" && break; sleep 0.1; done
status=$(c task ls | awk '$1 == "smoke-pause" {print $3}')
c task delete smoke-pause >/dev/null 2>&1 || true
c containers delete smoke-pause
[ "$status" = STOPPED ] || { echo "FAIL: pause did not stop on SIGTERM ($status)" >&2; exit 1; }
echo "ok   pause stops on SIGTERM"

mkdir -p "$work/coredns"
printf '.:53 {\n  bind 127.0.0.77\n  hosts {\n    127.0.0.99 kubeup.test\n  }\n}\n' >"$work/coredns/Corefile"
c run -d --net-host --mount "type=bind,src=$work/coredns,dst=/etc/coredns,options=rbind:ro" \
	"$ref_coredns" smoke-dns /coredns -conf /etc/coredns/Corefile >/dev/null
sleep 2
out=$(c run --rm --net-host "$ref_testbox" smoke-q nslookup kubeup.test 127.0.0.77 2>&1 || true)
c task kill -s SIGTERM smoke-dns >/dev/null 2>&1 || true
sleep 1
c task delete -f smoke-dns >/dev/null 2>&1 || true
c containers delete smoke-dns >/dev/null 2>&1 || true
echo "$out" | grep -q "Address: 127.0.0.99" || { echo "FAIL: no answer from coredns:" >&2; echo "$out" >&2; exit 1; }
echo "ok   coredns (user 65532, file capability) answers on 127.0.0.77:53"
echo "PASS artifacts smoke test"
