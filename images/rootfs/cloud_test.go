package rootfs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The clouds' drivers: EC2's ENA NIC and NVMe disks, GCE's gVNIC and
// virtio-scsi disks (and virtio-net/blk, which both clouds' older types
// and QEMU use). A trim of the image must never take them out.
var cloudModules = []string{
	"drivers/net/ethernet/amazon/ena/ena.ko",
	"drivers/nvme/host/nvme.ko",
	"drivers/nvme/host/nvme-core.ko",
	"drivers/net/ethernet/google/gve/gve.ko",
	"drivers/scsi/virtio_scsi.ko",
	"drivers/net/virtio_net.ko",
	"drivers/block/virtio_blk.ko",
}

func TestTrimKeepsCloudDrivers(t *testing.T) {
	root := t.TempDir()
	const kdir = "lib/modules/6.1.0-99-cloud-amd64/kernel/"
	for _, m := range cloudModules {
		write(t, root, kdir+m+".xz", "module")
	}
	write(t, root, kdir+"sound/core/snd.ko.xz", "module")
	if _, err := trimRules(root); err != nil {
		t.Fatal(err)
	}
	for _, m := range cloudModules {
		if _, err := os.Stat(filepath.Join(root, kdir+m+".xz")); err != nil {
			t.Errorf("trim removed the cloud driver %s", m)
		}
	}
	if _, err := os.Stat(filepath.Join(root, kdir+"sound/core/snd.ko.xz")); !os.IsNotExist(err) {
		t.Error("trim kept sound drivers: the test's trim did not run")
	}
}

// Machines find their user-data on every target: NoCloud (local VMs, bare
// metal), EC2's and GCE's metadata services.
func TestDatasourcesForEveryTarget(t *testing.T) {
	var cfg struct {
		DatasourceList []string `json:"datasource_list"`
	}
	found := false
	for _, f := range systemFiles() {
		if f.Path != "/etc/cloud/cloud.cfg.d/90-kubeup.cfg" {
			continue
		}
		found = true
		if err := yaml.Unmarshal(f.Content, &cfg); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatal("no /etc/cloud/cloud.cfg.d/90-kubeup.cfg in the image")
	}
	for _, ds := range []string{"NoCloud", "Ec2", "GCE"} {
		if !slices.Contains(cfg.DatasourceList, ds) {
			t.Errorf("datasource_list %v lacks %s", cfg.DatasourceList, ds)
		}
	}
	if i := slices.Index(cfg.DatasourceList, "None"); i >= 0 && i != len(cfg.DatasourceList)-1 {
		t.Errorf("datasource_list %v: None must come last (it always matches)", cfg.DatasourceList)
	}
	for _, m := range unusedModules {
		for _, c := range cloudModules {
			if strings.HasPrefix(c, m+"/") {
				t.Errorf("unusedModules has %s, which holds the cloud driver %s", m, c)
			}
		}
	}
}
