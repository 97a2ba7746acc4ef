package images

import (
	"strings"
	"testing"
)

func TestPinned(t *testing.T) {
	v, err := Load(versionsYAML)
	if err != nil {
		t.Fatalf("embedded versions.yaml: %v", err)
	}
	want := map[string]string{
		"kubernetes":  "v1.37.2",
		"etcd":        "v3.6.16",
		"containerd":  "v2.4.2",
		"cni-plugins": "v1.10.0",
		"coredns":     "v1.15.0",
		"pulumi":      "v3.274.1",
		// Prometheus 3.16.0; VictoriaLogs and the collector as the task pins them.
		"prometheus":    "v0.316.0",
		"victoria-logs": "v1.52.1",
		"otelcol":       "v0.165.1",
		"conformance":   "v1.37.2",
	}
	for name, version := range want {
		c, ok := v.Component(name)
		if !ok || c.Version != version {
			t.Errorf("component %s = %+v, want version %s", name, c, version)
		}
	}
	if c, _ := v.Component("runc"); !strings.HasPrefix(c.Version, "v1.5.") {
		t.Errorf("runc version %q, want v1.5.x", c.Version)
	}
	if c, _ := v.Component("pulumi"); c.Use != UseHost || c.OnDemand {
		t.Errorf("pulumi use = %q on demand %v, want host, always built", c.Use, c.OnDemand)
	}
}

// TestConformancePinned: the conformance suite is of the Kubernetes release
// the images run, a host tool built only on demand.
func TestConformancePinned(t *testing.T) {
	v := Pinned()
	c, ok := v.Component("conformance")
	if !ok {
		t.Fatal("no conformance component")
	}
	k, _ := v.Component("kubernetes")
	if c.Module != k.Module || c.Version != k.Version {
		t.Errorf("conformance %s@%s, want the kubernetes component's %s@%s", c.Module, c.Version, k.Module, k.Version)
	}
	if c.Use != UseHost || !c.OnDemand {
		t.Errorf("conformance use %q on demand %v, want host, on demand", c.Use, c.OnDemand)
	}
	for _, im := range v.Images {
		if im.From == c.Name {
			t.Errorf("image %s is made from the conformance host tools", im.Name)
		}
	}
}

func TestImageRefs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{PauseImage(), "registry.kubeup.dev/pause:3.10"},
		{CoreDNSImage(), "registry.kubeup.dev/coredns:v1.15.0"},
		{TestboxImage(), "registry.kubeup.dev/testbox:1.35.0-4-deb12u1-b1"},
		{PrometheusImage(), "registry.kubeup.dev/prometheus:v3.16.0"},
		{VictoriaLogsImage(), "registry.kubeup.dev/victoria-logs:v1.52.1"},
		{OtelcolImage(), "registry.kubeup.dev/otelcol:v0.165.1"},
	} {
		if tc.got != tc.want {
			t.Errorf("image ref %q, want %q", tc.got, tc.want)
		}
	}
}

func TestTagFor(t *testing.T) {
	for in, want := range map[string]string{
		"v1.15.0":               "v1.15.0",
		"3.10":                  "3.10",
		"1:1.35.0-4+deb12u1+b1": "1.35.0-4-deb12u1-b1",
		"2.0~rc1":               "2.0-rc1",
	} {
		if got := TagFor(in); got != want {
			t.Errorf("TagFor(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	const good = `
components:
  - name: etcd
    version: v3.6.16
    module: go.etcd.io/etcd/server/v3
    use: rootfs
    release:
      - url: https://example.org/etcd.tar.gz
        sha256: ""
        extract: {etcd/etcd: usr/local/bin/etcd}
  - name: busybox
    version: 1:1.35.0-4+deb12u1+b1
    package: busybox-static
    use: image
    release:
      - url: http://deb.example.org/busybox.deb
        sha256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744
        extract: {bin/busybox: bin/busybox}
images:
  - name: testbox
    repository: registry.kubeup.dev/testbox
    from: busybox
`
	if _, err := Load([]byte(good)); err != nil {
		t.Fatalf("good file rejected: %v", err)
	}
	for _, tc := range []struct {
		name, old, new string
		want           []string // every one must appear in the error
	}{
		{"not yaml", "components:", "components: [", []string{"parse versions"}},
		{"unknown field", "use: rootfs", "use: rootfs\n    colour: red", []string{`unknown field "colour"`}},
		{"bad semver", "version: v3.6.16", "version: 3.6", []string{"components[0](etcd).version", "not a full Go module version"}},
		{"bad use", "use: rootfs", "use: disk", []string{"components[0](etcd).use"}},
		{"bad sha", `sha256: ""`, "sha256: ABC", []string{"components[0](etcd).release[0].sha256"}},
		{"unpinned deb", "sha256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744", `sha256: ""`, []string{"components[1](busybox).release[0].sha256", "must be pinned"}},
		{"bad url", "https://example.org/etcd.tar.gz", "ftp://example.org/etcd.tar.gz", []string{"release[0].url"}},
		{"escaping path", "usr/local/bin/etcd", "../../etc/passwd", []string{"not a clean relative path"}},
		{"missing from", "from: busybox", "from: nothing", []string{`images[0](testbox).from: no component "nothing"`}},
		{"from not image", "from: busybox", "from: etcd", []string{`use "rootfs"`}},
		{"bad repository", "registry.kubeup.dev/testbox", "Registry/Testbox:1", []string{"images[0](testbox).repository"}},
		{"bad tag", "from: busybox", "from: busybox\n    tag: no/slash", []string{"images[0](testbox)", "reference"}},
		{"duplicate", "name: busybox", "name: etcd", []string{`duplicate component "etcd"`}},
		{"on demand rootfs", "use: rootfs", "use: rootfs\n    onDemand: true", []string{"components[0](etcd).onDemand", "VM images cannot be on demand"}},
		{"two modes", "extract: {bin/busybox: bin/busybox}", "extract: {bin/busybox: bin/busybox}\n        unpack: true", []string{"components[1](busybox).release[0]", "exactly one of install, extract and unpack"}},
		{"unpack not deb", "extract: {etcd/etcd: usr/local/bin/etcd}", "unpack: true", []string{"components[0](etcd).release[0].unpack", "only a .deb"}},
		{"with unknown", "from: busybox", "from: busybox\n    with: [nothing]", []string{"images[0](testbox).with[0]", `"nothing" is not a further component`}},
		{"with from again", "from: busybox", "from: busybox\n    with: [busybox]", []string{"images[0](testbox).with[0]"}},
		{"for not on demand", "from: busybox", "from: busybox\n    for: etcd", []string{"images[0](testbox).for", `"etcd" is not an on-demand component`}},
		{"rootfs from, not on demand", "from: busybox", "from: etcd\n    with: [busybox]", []string{`use "rootfs"`}},
		{"on-demand input", "use: image\n", "use: image\n    onDemand: true\n", []string{"images[0](testbox)", `on-demand component "busybox" but not on demand itself`}},
		// Several problems are reported together.
		{"two problems", "version: v3.6.16\n    module", "version: \"\"\n    module", []string{"version: missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(good, tc.old, tc.new, 1)
			if in == good {
				t.Fatalf("test case does not change the input")
			}
			_, err := Load([]byte(in))
			if err == nil {
				t.Fatalf("Load accepted:\n%s", in)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLoadOnDemandImage: a test image for an on-demand suite may be made
// from on-demand components, a VM component and further components (With).
func TestLoadOnDemandImage(t *testing.T) {
	v, err := Load([]byte(`
components:
  - name: etcd
    version: v3.6.16
    module: go.etcd.io/etcd/server/v3
    use: rootfs
  - name: suite
    version: v1.37.2
    module: k8s.io/kubernetes
    use: host
    onDemand: true
  - name: userland
    version: "12.12"
    package: curl
    use: image
    onDemand: true
    release:
      - url: http://deb.example.org/curl.deb
        sha256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744
        unpack: true
images:
  - name: e2e-etcd
    repository: registry.k8s.io/etcd
    from: etcd
    tag: 3.7.0-0
    for: suite
  - name: e2e-tools
    repository: registry.k8s.io/e2e-test-images/tools
    from: userland
    with: [suite]
    for: suite
`))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := v.Image("e2e-tools")
	if !im.OnDemand() || strings.Join(im.Components(), ",") != "userland,suite" || im.Ref() != "registry.k8s.io/e2e-test-images/tools:12.12" {
		t.Errorf("e2e-tools: on demand %v, components %v, ref %s", im.OnDemand(), im.Components(), im.Ref())
	}
	if im, _ := v.Image("e2e-etcd"); im.Ref() != "registry.k8s.io/etcd:3.7.0-0" {
		t.Errorf("e2e-etcd ref %s", im.Ref())
	}
}

func TestLoadReportsAllProblems(t *testing.T) {
	_, err := Load([]byte(`
components:
  - name: Bad_Name
    version: ""
    use: nowhere
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"name", "version: missing", "use"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
