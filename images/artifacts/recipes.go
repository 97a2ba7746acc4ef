package artifacts

import (
	"path"
	"slices"
	"strings"
	"time"

	"kubeup.dev/kubeup/images"
)

// goBuild is one `go build` in a wrapper module.
type goBuild struct {
	// Package is "." (the wrapper's main), a subdirectory, or an import path.
	Package string `json:"package"`
	// Test builds the package's test binary (`go test -c`) instead of its
	// program: Kubernetes' e2e suite is the test of k8s.io/kubernetes/test/e2e.
	Test bool `json:"test,omitempty"`
	// Output is where the binary lands, relative to the root.
	Output    string   `json:"output"`
	Tags      []string `json:"tags,omitempty"`
	LDFlags   []string `json:"ldflags"`
	CGO       bool     `json:"cgo,omitempty"`
	BuildMode string   `json:"buildmode,omitempty"`
	// Hint is added to a failure (e.g. which C libraries a cgo build needs).
	Hint string `json:"-"`
}

// link is a symlink in the root, Path -> Target (relative target).
type link struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// buildRecipe says how to build a component from its wrapper module
// images/modules/<component name>.
type buildRecipe struct {
	Builds []goBuild `json:"builds"`
	Links  []link    `json:"links,omitempty"`
	// Patch, if set, builds from a patched copy of one module.
	Patch *sourcePatch `json:"patch,omitempty"`
}

// sourcePatch makes the builds use a patched copy of one module (`go build
// -modfile` with a replace to the copy) for what upstream's release build
// does to its checkout before compiling: Prometheus selects its service
// discovery plugins by rewriting plugins/*.go (`make plugins`) and embeds a
// web UI built with npm (`make assets-compress`). The module cache itself is
// never changed (Go refuses overlays of it).
type sourcePatch struct {
	Module string `json:"module"`
	// Keep prunes directories to the listed files (dir -> kept file names).
	Keep map[string][]string `json:"keep,omitempty"`
	// Files are added or replaced (module-relative path -> content).
	Files map[string]string `json:"files,omitempty"`
	// Edits change upstream's code in place, each checked.
	Edits []sourceEdit `json:"edits,omitempty"`
	UI    *uiBuild     `json:"ui,omitempty"`
}

// sourceEdit replaces Old, which must occur exactly once in the module file
// Path, with New: a small change to upstream's code that fails the build,
// naming the file, when a new version moved or changed that code, rather
// than building it unpatched.
type sourceEdit struct {
	Path string `json:"path"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// containerdEventTimeout is how long containerd's CRI plugin gives the
// handling of one task event (upstream: 10 s). Handling a container's exit
// deletes its task in the shim, which runs `runc delete` (with systemd
// cgroups, a D-Bus call to systemd) under that deadline; on a master under
// TCG at load 15 that takes 8-12 s, and a delete that misses the deadline is
// killed and started over on the next retry, so it never finishes: the pod
// stays Init:0/1 or Terminating until a human deletes the task by hand (seen
// in make e2e's first boot and after reboots: issue 12's stuck Prometheus
// pod). A minute lets the delete finish on the first try; a shim that truly
// hangs still only delays the event queue (the kubelet's own runtime
// requests allow 2 minutes).
const containerdEventTimeout = "1 * time.Minute"

// containerdEdits set containerdEventTimeout in both places the CRI plugin
// defines its event deadline (containers, pod sandboxes).
func containerdEdits() []sourceEdit {
	var out []sourceEdit
	for _, f := range []string{"internal/cri/server/events.go", "internal/cri/server/podsandbox/events.go"} {
		out = append(out, sourceEdit{Path: f, Old: "handleEventTimeout = 10 * time.Second", New: "handleEventTimeout = " + containerdEventTimeout})
	}
	return out
}

// uiBuild builds a JavaScript UI in the module copy with Node.js and pnpm
// (from the npm registry), then gzips its output for go:embed as upstream's
// scripts/compress_assets.sh does.
type uiBuild struct {
	// Dir holds the pnpm workspace, module-relative.
	Dir string `json:"dir"`
	// PNPM is the pnpm version, installed with npm into the work directory.
	PNPM string `json:"pnpm"`
	// Overrides are pnpm overrides added to the workspace: versions the
	// lockfile pins that the npm registry reachable here does not serve.
	Overrides map[string]string `json:"overrides,omitempty"`
	// Run is the build command, run in Dir with pnpm on $PATH.
	Run []string `json:"run"`
	// Output is the directory (relative to Dir) whose files are replaced by
	// gzipped copies (name.gz).
	Output string `json:"output"`
}

// buildRecipeFor returns the recipe of a component with a Go module (or
// kubeup's own pause), or false. Versions come from versions.yaml; the flags
// follow each upstream's own release build (Makefile or build script), minus
// what needs a git checkout.
func buildRecipeFor(c images.Component, sourceDateEpoch int64) (buildRecipe, bool) {
	strip := []string{"-s", "-w"}
	bin := func(n string) string { return "usr/local/bin/" + n }
	switch c.Name {
	case "kubernetes":
		ld := append(append([]string(nil), strip...), k8sVersionLDFlags(c.Version, sourceDateEpoch)...)
		r := buildRecipe{Builds: []goBuild{{Package: ".", Output: bin("kubernetes"), LDFlags: ld}}}
		for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
			r.Links = append(r.Links, link{Path: bin(n), Target: "kubernetes"})
		}
		return r, true
	case "etcd":
		// The version is a constant in go.etcd.io/etcd/api/v3/version.
		return buildRecipe{
			Builds: []goBuild{{Package: ".", Output: bin("etcd"), LDFlags: strip}},
			Links:  []link{{Path: bin("etcdctl"), Target: "etcd"}, {Path: bin("etcdutl"), Target: "etcd"}},
		}, true
	case "containerd":
		// Tags as upstream's static release build minus the storage drivers
		// that need cgo. Revision (a git commit) is not known from the module.
		tags := []string{"no_btrfs", "no_devmapper", "no_zfs"}
		ld := append(append([]string(nil), strip...),
			"-X", "github.com/containerd/containerd/v2/version.Version="+c.Version)
		return buildRecipe{
			Builds: []goBuild{
				{Package: ".", Output: bin("containerd"), Tags: tags, LDFlags: ld},
				{Package: "./shim", Output: bin("containerd-shim-runc-v2"), Tags: tags, LDFlags: ld},
			},
			Links: []link{{Path: bin("ctr"), Target: "containerd"}},
			Patch: &sourcePatch{Module: c.Module, Edits: containerdEdits()},
		}, true
	case "runc":
		// runc's `make static`: static PIE with seccomp; cgo for libseccomp
		// and runc's nsexec. Its version is embedded from its VERSION file.
		return buildRecipe{Builds: []goBuild{{
			Package:   c.Module,
			Output:    "usr/local/sbin/runc",
			Tags:      []string{"seccomp", "urfave_cli_no_docs", "netgo", "osusergo"},
			LDFlags:   append(append([]string(nil), strip...), "-linkmode", "external", "-extldflags", "-static-pie"),
			CGO:       true,
			BuildMode: "pie",
			Hint:      "runc needs a C compiler and the static libseccomp (Debian: apt-get install gcc libseccomp-dev)",
		}}}, true
	case "cni-plugins":
		var r buildRecipe
		for _, p := range []string{"main/bridge", "ipam/host-local", "main/loopback", "meta/portmap"} {
			r.Builds = append(r.Builds, goBuild{
				Package: c.Module + "/plugins/" + p,
				Output:  "opt/cni/bin/" + path.Base(p),
				LDFlags: append(append([]string(nil), strip...),
					"-X", "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion="+c.Version),
			})
		}
		return r, true
	case "coredns":
		// Into the container image's root; the version is coremain.CoreVersion.
		return buildRecipe{Builds: []goBuild{{Package: ".", Output: "coredns", LDFlags: strip}}}, true
	case "pause":
		return buildRecipe{Builds: []goBuild{{Package: ".", Output: "pause",
			LDFlags: append(append([]string(nil), strip...), "-X", "main.version="+c.Version)}}}, true
	case "prometheus":
		// As upstream's .promu.yml: netgo and builtinassets, version stamped
		// into prometheus/common/version.
		return buildRecipe{
			Builds: []goBuild{{
				Package: c.Module + "/cmd/prometheus",
				Output:  "bin/prometheus",
				Tags:    []string{"netgo", "builtinassets"},
				LDFlags: append(append([]string(nil), strip...),
					"-X", "github.com/prometheus/common/version.Version="+PrometheusVersion(c.Version),
					"-X", "github.com/prometheus/common/version.Branch=HEAD",
					"-X", "github.com/prometheus/common/version.BuildUser=kubeup",
					"-X", "github.com/prometheus/common/version.BuildDate="+time.Unix(sourceDateEpoch, 0).UTC().Format("20060102-15:04:05")),
				Hint: "Prometheus' web UI is built with Node.js (>= 20.19) and npm from the npm registry",
			}},
			Patch: &sourcePatch{
				Module: c.Module,
				// Service discovery: kubernetes_sd (and static, built in); the
				// minimum set (file, http) upstream always links.
				Keep: map[string][]string{"plugins": {"minimum.go", "plugin_kubernetes.go"}},
				// What compress_assets.sh generates (it lists every file;
				// the directory embeds the same set).
				Files: map[string]string{"web/ui/embed.go": "//go:build builtinassets\n\npackage ui\n\nimport \"embed\"\n\n//go:embed static\nvar EmbedFS embed.FS\n"},
				UI: &uiBuild{
					Dir:  "web/ui",
					PNPM: "10.34.9",
					// The lockfile's 9.7.2 is not served here; 9.6.2 is the
					// newest that is (the UI only uses its CodeHighlight).
					Overrides: map[string]string{"@mantine/code-highlight": "9.6.2"},
					Run:       []string{"bash", "build_ui.sh", "--mantine-ui"},
					Output:    "static",
				},
			},
		}, true
	case "victoria-logs":
		// Upstream's Makefile stamps buildinfo.Version as
		// victoria-logs-<date>-<git describe>; the module gives no git.
		return buildRecipe{Builds: []goBuild{{
			Package: "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs",
			Output:  "victoria-logs",
			LDFlags: append(append([]string(nil), strip...),
				"-X", "github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-"+
					time.Unix(sourceDateEpoch, 0).UTC().Format("20060102-150405")+"-tags-"+c.Version),
		}}}, true
	case "otelcol":
		return buildRecipe{Builds: []goBuild{{Package: ".", Output: "otelcol",
			LDFlags: append(append([]string(nil), strip...), "-X", "main.version="+c.Version)}}}, true
	case "conformance":
		// Upstream's conformance tools, as its release build makes them
		// (hack/lib/golang.sh: the Kubernetes version stamps, tags selinux,
		// notest and grpcnotrace, stripped), from the same module graph as the
		// kubernetes component (TestConformanceModuleMatchesKubernetes).
		// agnhost is built as test/images/image-util.sh does, with its own
		// version (the image tag the suite expects).
		tags := []string{"selinux", "notest", "grpcnotrace"}
		return buildRecipe{Builds: []goBuild{
			{
				Package: c.Module + "/test/e2e",
				Test:    true,
				Output:  bin("e2e.test"),
				Tags:    tags,
				LDFlags: append(append([]string(nil), strip...), k8sVersionLDFlags(c.Version, sourceDateEpoch)...),
			},
			{Package: "github.com/onsi/ginkgo/v2/ginkgo", Output: bin("ginkgo"), Tags: tags, LDFlags: strip},
			{
				Package: c.Module + "/test/images/agnhost",
				Output:  bin("agnhost"),
				LDFlags: append(append([]string(nil), strip...), "-X", "main.Version="+AgnhostVersion),
			},
		}}, true
	case "sample-apiserver":
		// As upstream's test/images/sample-apiserver: a plain static build.
		return buildRecipe{Builds: []goBuild{{Package: c.Module, Output: "sample-apiserver", LDFlags: strip}}}, true
	case "pulumi":
		return buildRecipe{Builds: []goBuild{{
			Package: c.Module + "/cmd/pulumi",
			Output:  bin("pulumi"),
			LDFlags: append(append([]string(nil), strip...),
				"-X", "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version="+c.Version),
		}}}, true
	}
	return buildRecipe{}, false
}

// k8sVersionLDFlags stamps a Kubernetes version as hack/lib/version.sh does;
// buildDate follows SOURCE_DATE_EPOCH so that rebuilds are byte-identical.
func k8sVersionLDFlags(version string, sourceDateEpoch int64) []string {
	major, minor := k8sMajorMinor(version)
	var ld []string
	for _, pkg := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
		ld = append(ld,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean",
			"-X", pkg+".buildDate="+time.Unix(sourceDateEpoch, 0).UTC().Format(time.RFC3339),
		)
	}
	return ld
}

// AgnhostVersion is the agnhost built by the conformance component: the
// VERSION of test/images/agnhost in the pinned k8s.io/kubernetes, which is
// also the tag of registry.k8s.io/e2e-test-images/agnhost that its e2e suite
// runs (test/utils/image/manifest.go; TestAgnhostVersion checks both).
const AgnhostVersion = "2.66.1"

// k8sMajorMinor splits "v1.37.2" into "1", "37".
func k8sMajorMinor(v string) (string, string) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return "", ""
	}
	return parts[0], parts[1]
}

// PrometheusVersion is the Prometheus release of a Prometheus Go module
// version: v0.316.0 is 3.16.0 (upstream tags module versions v0.MMmm.p for
// release M.mm.p since 3.0).
func PrometheusVersion(module string) string {
	parts := strings.SplitN(strings.TrimPrefix(module, "v0."), ".", 2)
	if len(parts) != 2 || len(parts[0]) < 3 {
		return strings.TrimPrefix(module, "v")
	}
	major, minor := parts[0][:len(parts[0])-2], strings.TrimLeft(parts[0][len(parts[0])-2:], "0")
	if minor == "" {
		minor = "0"
	}
	return major + "." + minor + "." + parts[1]
}

// imageRecipe is how a container image is made from a component's files:
// its config and what is added beside them.
//
// A recipe with a Lower is one layer on top of the layers Lower makes: the
// image's files are Lower's and then this recipe's own (its Copy, Links,
// Files, Dirs, ModuleFiles; the image component's files are in the lowest
// layer only), and its config is this recipe's alone. Images built on the
// same Lower share those layers byte for byte, so a machine stores them
// once and an archive of several of them carries them once.
type imageRecipe struct {
	Entrypoint   []string            `json:"entrypoint,omitempty"`
	Cmd          []string            `json:"cmd,omitempty"`
	User         string              `json:"user,omitempty"`
	Env          []string            `json:"env,omitempty"`
	ExposedPorts []string            `json:"exposedPorts,omitempty"`
	Links        []link              `json:"links,omitempty"`
	Files        map[string]string   `json:"files,omitempty"` // path -> content (0644)
	Dirs         map[string]int64    `json:"dirs,omitempty"`  // path -> mode
	Capabilities map[string][]string `json:"capabilities,omitempty"`
	// Copy takes files from the image's further components (its `with`).
	Copy []copyFrom `json:"copy,omitempty"`
	// ModuleFiles takes files from the Go module source a component is
	// built from (an upstream image's data files).
	ModuleFiles []moduleFile `json:"moduleFiles,omitempty"`
	// Fill are links added only where no other entry is: busybox applets
	// for what the image's other files do not provide.
	Fill []link `json:"fill,omitempty"`
	// Lower is the recipe of the layers under this one (nil: this is the
	// image's only layer).
	Lower *imageRecipe `json:"lower,omitempty"`
}

// layers are r's layer recipes, lowest first.
func (r imageRecipe) layers() []imageRecipe {
	var out []imageRecipe
	for l := &r; l != nil; l = l.Lower {
		out = append(out, *l)
	}
	slices.Reverse(out)
	return out
}

// allCopies and allModuleFiles are what every layer of r takes.
func (r imageRecipe) allCopies() []copyFrom {
	var out []copyFrom
	for _, l := range r.layers() {
		out = append(out, l.Copy...)
	}
	return out
}

func (r imageRecipe) allModuleFiles() []moduleFile {
	var out []moduleFile
	for _, l := range r.layers() {
		out = append(out, l.ModuleFiles...)
	}
	return out
}

// copyFrom puts a component's file Path, or every file under the directory
// Path ("" for its whole root), at To ("" for the image's root).
type copyFrom struct {
	Component string `json:"component"`
	Path      string `json:"path,omitempty"`
	To        string `json:"to,omitempty"`
}

// moduleFile puts Path of the Go module Component is built from (its
// versions.yaml module, at the version its wrapper module requires) at To.
type moduleFile struct {
	Component string `json:"component"`
	Path      string `json:"path"`
	To        string `json:"to"`
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// passwd and group name the users of the images without a shell, so that
// user lookups (Go's os/user, the collector's file storage) find them.
const (
	passwd = "root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group  = "root:x:0:\nnogroup:x:65534:\n"
)

// busyboxApplets get a symlink in the testbox image: what smoke tests and a
// person debugging a pod reach for.
var busyboxApplets = []string{
	"ash", "cat", "cp", "date", "dd", "df", "du", "echo", "env", "false", "find", "grep", "head",
	"hostname", "id", "ip", "kill", "less", "ln", "ls", "mkdir", "mv", "nc", "netstat", "nslookup",
	"ping", "printf", "ps", "pwd", "rm", "sed", "sh", "sleep", "sort", "stat", "tail", "tee", "test",
	"timeout", "top", "touch", "tr", "true", "uname", "uptime", "vi", "watch", "wc", "wget", "which",
}

// busyboxAllApplets are every applet of the pinned busybox-static but
// busybox itself (its `busybox --list`; TestIntegrationArtifacts checks them):
// the conformance images have them all in /bin, as upstream's busybox image.
var busyboxAllApplets = []string{
	"[", "[[", "acpid", "adjtimex", "ar", "arch", "arp", "arping", "ascii", "ash", "awk", "base64",
	"basename", "bc", "blkdiscard", "blockdev", "brctl", "bunzip2", "bzcat", "bzip2", "cal", "cat",
	"chgrp", "chmod", "chown", "chroot", "chvt", "clear", "cmp", "cp", "cpio", "crc32", "crond",
	"crontab", "cttyhack", "cut", "date", "dc", "dd", "deallocvt", "depmod", "devmem", "df", "diff",
	"dirname", "dmesg", "dnsdomainname", "dos2unix", "dpkg", "dpkg-deb", "du", "dumpkmap",
	"dumpleases", "echo", "ed", "egrep", "env", "expand", "expr", "factor", "fallocate", "false",
	"fatattr", "fdisk", "fgrep", "find", "findfs", "fold", "free", "freeramdisk", "fsfreeze", "fstrim",
	"ftpget", "ftpput", "getopt", "getty", "grep", "groups", "gunzip", "gzip", "halt", "head",
	"hexdump", "hostid", "hostname", "httpd", "hwclock", "i2cdetect", "i2cdump", "i2cget", "i2cset",
	"i2ctransfer", "id", "ifconfig", "ifdown", "ifup", "init", "insmod", "ionice", "ip", "ipcalc",
	"ipneigh", "kill", "killall", "klogd", "last", "less", "link", "linux32", "linux64", "linuxrc",
	"ln", "loadfont", "loadkmap", "logger", "login", "logname", "logread", "losetup", "ls", "lsmod",
	"lsscsi", "lzcat", "lzma", "lzop", "md5sum", "mdev", "microcom", "mim", "mkdir", "mkdosfs",
	"mke2fs", "mkfifo", "mknod", "mkpasswd", "mkswap", "mktemp", "modinfo", "modprobe", "more",
	"mount", "mt", "mv", "nameif", "nc", "netstat", "nl", "nologin", "nproc", "nsenter", "nslookup",
	"nuke", "od", "openvt", "partprobe", "passwd", "paste", "patch", "pidof", "ping", "ping6",
	"pivot_root", "poweroff", "printf", "ps", "pwd", "rdate", "readlink", "realpath", "reboot",
	"renice", "reset", "resume", "rev", "rm", "rmdir", "rmmod", "route", "rpm", "rpm2cpio", "run-init",
	"run-parts", "sed", "seq", "setkeycodes", "setpriv", "setsid", "sh", "sha1sum", "sha256sum",
	"sha3sum", "sha512sum", "shred", "shuf", "sleep", "sort", "ssl_client", "start-stop-daemon",
	"stat", "strings", "stty", "su", "sulogin", "svc", "svok", "swapoff", "swapon", "switch_root",
	"sync", "sysctl", "syslogd", "tac", "tail", "tar", "taskset", "tc", "tee", "telnet", "telnetd",
	"test", "tftp", "time", "timeout", "top", "touch", "tr", "traceroute", "traceroute6", "true",
	"truncate", "ts", "tty", "tunctl", "ubirename", "udhcpc", "udhcpd", "uevent", "umount", "uname",
	"uncompress", "unexpand", "uniq", "unix2dos", "unlink", "unlzma", "unshare", "unxz", "unzip",
	"uptime", "usleep", "uudecode", "uuencode", "vconfig", "vi", "w", "watch", "watchdog", "wc",
	"wget", "which", "who", "whoami", "xargs", "xxd", "xz", "xzcat", "yes", "zcat",
}

// appletLinks links every applet in bin/ to busybox.
func appletLinks(applets []string) []link {
	var l []link
	for _, a := range applets {
		l = append(l, link{Path: "bin/" + a, Target: "busybox"})
	}
	return l
}

// e2eUsers are upstream's agnhost users beside root and nobody: some specs
// run as user-defined-in-image (1000), whose group group-defined-in-image
// (50000) they expect in `id -G`.
const (
	e2ePasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
		"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
	e2eGroup = "root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"
	// glibc's getent and resolver read /etc/hosts before DNS only when told
	// (musl, upstream's agnhost libc, always does).
	nsswitch = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"
)

// e2eToolsRecipe is what the busybox-based conformance images share: every
// busybox applet in /bin where the Debian tools (e2e-userland: bash, curl,
// dig, getent, nc from netcat-openbsd) leave the name free, users and
// nsswitch.conf. /bin/sh is bash: Debian's busybox is built with its
// "standalone shell", whose sh runs its own applet for any name it has, so
// the specs' `sh -c "... | nc -u ..."` ran busybox's nc, which has no -u
// (the HostPort spec's UDP check failed on it); upstream's Alpine busybox
// runs what PATH finds, netcat-openbsd there too.
func e2eToolsRecipe() imageRecipe {
	return imageRecipe{
		Env: []string{defaultPath},
		Files: map[string]string{
			"etc/passwd":        e2ePasswd,
			"etc/group":         e2eGroup,
			"etc/nsswitch.conf": nsswitch,
		},
		Links: []link{{Path: "bin/nc", Target: "nc.openbsd"}, {Path: "bin/sh", Target: "bash"}},
		Dirs:  map[string]int64{"tmp": 0o1777, "root": 0o700, "home/user-defined-in-image": 0o755},
		Copy:  []copyFrom{{Component: "e2e-userland"}},
		Fill:  appletLinks(busyboxAllApplets),
	}
}

// e2eAgnhostRecipe is upstream's test/images/agnhost/Dockerfile as near as
// kubeup's parts give it: /agnhost (the conformance component's, version
// AgnhostVersion) and its agnhost-2 link, the porter certificates, /uploads,
// busybox with Debian's tools for Alpine's. Left out: iperf, socat,
// util-linux, iproute2 (busybox's ip stands in), CoreDNS 1.6.2 and the fake
// registry under /var/registry, which no [Conformance] spec uses. Two
// layers: e2eToolsRecipe's (the glibc-dns-testing image's only layer), then
// agnhost's own files.
func e2eAgnhostRecipe() imageRecipe {
	tools := e2eToolsRecipe()
	return imageRecipe{
		Lower:        &tools,
		Entrypoint:   []string{"/agnhost"},
		Cmd:          []string{"pause"},
		Env:          tools.Env,
		ExposedPorts: []string{"80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp"},
		Copy:         []copyFrom{{Component: "conformance", Path: "usr/local/bin/agnhost", To: "agnhost"}},
		Links:        []link{{Path: "agnhost-2", Target: "agnhost"}},
		ModuleFiles: []moduleFile{
			{Component: "conformance", Path: "test/images/agnhost/porter/localhost.crt", To: "localhost.crt"},
			{Component: "conformance", Path: "test/images/agnhost/porter/localhost.key", To: "localhost.key"},
		},
		Dirs: map[string]int64{"uploads": 0o755},
		// The image volume spec reads the kitten image's /etc/os-release
		// and expects upstream's base, "Alpine Linux"; this file says what
		// stands in for it.
		Files: map[string]string{"etc/os-release": "NAME=\"kubeup e2e image\"\nID=kubeup-e2e\n" +
			"PRETTY_NAME=\"kubeup's e2e image: busybox and Debian tools in place of upstream's Alpine Linux base\"\n"},
	}
}

// e2ePageRecipe is kitten or nautilus: agnhost serving the image's page
// (upstream: FROM agnhost, its html/ files at /, CMD test-webserver): a
// third layer with the page's two files on agnhost's two.
func e2ePageRecipe(name string) imageRecipe {
	agnhost := e2eAgnhostRecipe()
	return imageRecipe{
		Lower:        &agnhost,
		Entrypoint:   agnhost.Entrypoint,
		Cmd:          []string{"test-webserver"},
		Env:          agnhost.Env,
		ExposedPorts: agnhost.ExposedPorts,
		ModuleFiles: []moduleFile{
			{Component: "conformance", Path: "test/images/" + name + "/html/" + name + ".jpg", To: name + ".jpg"},
			{Component: "conformance", Path: "test/images/" + name + "/html/data.json", To: "data.json"},
		},
	}
}

// imageRecipeFor returns the recipe of an image from versions.yaml. To add an
// image: a component with `use: image` (and its build recipe), an entry under
// images: in versions.yaml, and a case here.
func imageRecipeFor(name string) (imageRecipe, bool) {
	switch name {
	case "pause":
		// Upstream's pause image runs as 65535 too.
		return imageRecipe{Entrypoint: []string{"/pause"}, User: "65535:65535", Env: []string{defaultPath}}, true
	case "coredns":
		// As upstream's image: an unprivileged user, with the file capability
		// to bind port 53; pods add NET_BIND_SERVICE (upstream manifests do).
		return imageRecipe{
			Entrypoint:   []string{"/coredns"},
			User:         "65532:65532",
			Env:          []string{defaultPath},
			ExposedPorts: []string{"53/tcp", "53/udp"},
			Capabilities: map[string][]string{"coredns": {"cap_net_bind_service"}},
		}, true
	case "prometheus":
		// As upstream's image: nobody, data in /prometheus; the monitoring
		// addon passes every flag.
		return imageRecipe{
			Entrypoint:   []string{"/bin/prometheus"},
			Cmd:          []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"},
			User:         "65534:65534",
			Env:          []string{defaultPath},
			ExposedPorts: []string{"9090/tcp"},
			Dirs:         map[string]int64{"prometheus": 0o777},
			Files:        map[string]string{"etc/passwd": passwd, "etc/group": group},
		}, true
	case "victoria-logs":
		return imageRecipe{
			Entrypoint:   []string{"/victoria-logs"},
			Cmd:          []string{"-storageDataPath=/victoria-logs-data"},
			User:         "65534:65534",
			Env:          []string{defaultPath},
			ExposedPorts: []string{"9428/tcp"},
			Dirs:         map[string]int64{"victoria-logs-data": 0o777},
			Files:        map[string]string{"etc/passwd": passwd, "etc/group": group},
		}, true
	case "otelcol":
		// Upstream's collector images run as 10001 with /otelcol as the
		// entrypoint; the logging addon passes --config.
		return imageRecipe{
			Entrypoint:   []string{"/otelcol"},
			User:         "10001:10001",
			Env:          []string{defaultPath},
			ExposedPorts: []string{"24224/tcp", "4318/tcp", "13133/tcp"},
			Files: map[string]string{
				"etc/passwd": passwd + "otel:x:10001:10001:otel:/nonexistent:/bin/false\n",
				"etc/group":  group + "otel:x:10001:\n",
			},
		}, true
	case "testbox":
		r := imageRecipe{
			Cmd: []string{"sh"},
			Env: []string{"PATH=/bin"},
			Files: map[string]string{
				"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
				"etc/group":  group,
			},
			Dirs: map[string]int64{"tmp": 0o1777, "root": 0o700},
		}
		for _, a := range busyboxApplets {
			r.Links = append(r.Links, link{Path: "bin/" + a, Target: "busybox"})
		}
		return r, true

	// The conformance suite's images (versions.yaml, `for: conformance`).
	case "e2e-agnhost", "e2e-agnhost-prev":
		return e2eAgnhostRecipe(), true
	case "e2e-kitten":
		return e2ePageRecipe("kitten"), true
	case "e2e-nautilus":
		return e2ePageRecipe("nautilus"), true
	case "e2e-nonewprivs":
		// Upstream: Alpine with test/images/nonewprivs' nnp, which prints
		// its effective uid; agnhost's nonewprivs subcommand is the same
		// code. Not setuid root as upstream's nnp: the conformance spec
		// (allowPrivilegeEscalation=false) expects the uid it runs as.
		return imageRecipe{
			Cmd:   []string{"/usr/local/bin/agnhost", "nonewprivs"},
			Env:   []string{defaultPath},
			Files: map[string]string{"etc/passwd": e2ePasswd, "etc/group": e2eGroup},
			Copy:  []copyFrom{{Component: "conformance", Path: "usr/local/bin/agnhost", To: "usr/local/bin/agnhost"}},
			Dirs:  map[string]int64{"tmp": 0o1777},
			Fill:  appletLinks(busyboxAllApplets),
		}, true
	case "e2e-glibc-dns-testing":
		// Upstream: debian:bookworm-slim with dnsutils; the DNS specs run
		// dig and getent in it, with glibc.
		r := e2eToolsRecipe()
		r.Cmd = []string{"bash"}
		return r, true
	case "e2e-busybox":
		// Upstream: busybox:1.37.0; here Debian's busybox-static with every
		// applet.
		return imageRecipe{
			Cmd: []string{"sh"},
			Env: []string{defaultPath},
			Files: map[string]string{
				"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
				"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
			},
			Links: appletLinks(busyboxAllApplets),
			Dirs:  map[string]int64{"tmp": 0o1777, "root": 0o700, "home": 0o755},
		}, true
	case "e2e-pause":
		// kubeup's pause under the name the suite's specs use.
		return imageRecipeFor("pause")
	case "e2e-etcd":
		// The aggregator spec runs /usr/local/bin/etcd with its own flags.
		return imageRecipe{Cmd: []string{"/usr/local/bin/etcd"}, Env: []string{defaultPath}, Dirs: map[string]int64{"tmp": 0o1777}}, true
	case "e2e-sample-apiserver":
		return imageRecipe{Entrypoint: []string{"/sample-apiserver"}, Env: []string{defaultPath}, Dirs: map[string]int64{"tmp": 0o1777}}, true
	case "e2e-nginx":
		// Upstream: nginx:1.27-alpine, `nginx -g 'daemon off;'` as root
		// with workers as an unprivileged user, logs to the container's
		// output. Debian's package, whose maintainer scripts do not run
		// here: the default site's link, the dirs and the users they make.
		return imageRecipe{
			Cmd:          []string{"/usr/sbin/nginx", "-g", "daemon off;"},
			Env:          []string{defaultPath},
			ExposedPorts: []string{"80/tcp"},
			Files: map[string]string{
				"etc/passwd": passwd + "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
				"etc/group":  group + "www-data:x:33:\n",
			},
			Links: []link{
				{Path: "etc/nginx/sites-enabled/default", Target: "/etc/nginx/sites-available/default"},
				{Path: "var/www/html/index.html", Target: "/usr/share/nginx/html/index.html"},
				{Path: "var/log/nginx/access.log", Target: "/dev/stdout"},
				{Path: "var/log/nginx/error.log", Target: "/dev/stderr"},
			},
			Dirs: map[string]int64{"tmp": 0o1777, "run": 0o755, "var/lib/nginx": 0o755},
		}, true
	}
	return imageRecipe{}, false
}
