package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"kubeup.dev/kubeup/infra"
	"kubeup.dev/kubeup/infra/provider"
	"kubeup.dev/kubeup/infra/qemu"
)

// ErrNothingToDestroy: down found no cluster of that name (not a failure).
var ErrNothingToDestroy = errors.New("nothing to destroy")

// Down destroys a cluster: Pulumi destroy and stack removal, then every
// process and file the cluster left (after a failed or interrupted up, the
// stack may not know all of them), so that nothing of it remains.
func Down(ctx context.Context, name string, o Options) error {
	o.defaults()
	dir := Dir(o.DataDir, name)
	_, statErr := os.Stat(dir)
	eng := engine(o, nil)
	logPath := filepath.Join(o.DataDir, "pulumi-destroy-"+name+".log")
	if statErr == nil {
		logPath = filepath.Join(dir, "pulumi-destroy.log")
	}
	logf, err := os.Create(logPath)
	if err == nil {
		defer logf.Close()
		eng.Progress = logf
	}
	if st, err := LoadState(o.DataDir, name); err == nil && st.Cloud != nil {
		if err := downCloud(ctx, st, o, eng.Progress); err != nil {
			return fmt.Errorf("%w (engine output: %s)", err, logPath)
		}
		return os.RemoveAll(dir)
	}
	derr := eng.Destroy(ctx, name)
	noStack := errors.Is(derr, infra.ErrNoStack)
	if derr != nil && !noStack {
		return fmt.Errorf("%w (engine output: %s)", derr, logPath)
	}
	if os.IsNotExist(statErr) {
		if noStack {
			_ = os.Remove(logPath)
			return ErrNothingToDestroy
		}
		return nil
	}
	if err := sweep(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// sweep stops any VM, switch or API endpoint still running from dir, by the PID in its
// pidfile (never by name).
func sweep(dir string) error {
	vms, _ := filepath.Glob(filepath.Join(dir, "machines", "*"))
	for _, d := range vms {
		if err := (&qemu.VM{Dir: d}).Stop(0); err != nil {
			return err
		}
	}
	if err := provider.StopEndpoint(filepath.Join(dir, "endpoint")); err != nil {
		return err
	}
	return (&qemu.Switch{Dir: filepath.Join(dir, "network")}).Stop()
}

// Leftovers lists processes whose command line names the cluster's
// directory (its VMs and switch): what down must leave none of. It reads
// /proc; it never signals anything.
func Leftovers(dataDir, name string) []string {
	dir := []byte(Dir(dataDir, name) + "/")
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, dir) {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		out = append(out, fmt.Sprintf("pid %d: %s", pid, filepath.Base(args[0])))
	}
	return out
}
