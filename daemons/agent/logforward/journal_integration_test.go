package logforward

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIntegrationJournalctl runs the real journalctl (--directory) over
// journal files written by systemd-journal-remote, so it needs no running
// journald: it checks the match semantics (units OR identifiers, systemd's
// messages about a unit, nothing else), byte-array messages, following new
// entries, and resuming after the saved cursor. It skips where the tools
// are missing (Debian packages systemd and systemd-journal-remote).
func TestIntegrationJournalctl(t *testing.T) {
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("needs journalctl (Debian package systemd)")
	}
	remote := ""
	for _, p := range []string{"/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote"} {
		if _, err := os.Stat(p); err == nil {
			remote = p
			break
		}
	}
	if remote == "" {
		t.Skip("needs systemd-journal-remote to write journal files (Debian package systemd-journal-remote)")
	}
	dir, state := t.TempDir(), t.TempDir()
	boot := "0123456789abcdef0123456789abcdef"
	now := time.Now()
	seq := 0
	entry := func(fields ...string) []byte {
		seq++
		var b bytes.Buffer
		fmt.Fprintf(&b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n", now.UnixMicro()+int64(seq), seq, boot)
		for _, f := range fields {
			k, v, _ := strings.Cut(f, "=")
			if strings.ContainsAny(v, "\x1b\n") { // the export format's binary form
				b.WriteString(k + "\n")
				binary.Write(&b, binary.LittleEndian, uint64(len(v)))
				b.WriteString(v + "\n")
				continue
			}
			b.WriteString(f + "\n")
		}
		b.WriteString("\n")
		return b.Bytes()
	}
	writeJournal := func(name string, entries ...[]byte) {
		t.Helper()
		cmd := exec.Command(remote, "--output="+filepath.Join(dir, name), "-")
		cmd.Stdin = bytes.NewReader(bytes.Join(entries, nil))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
		}
	}
	writeJournal("a.journal",
		entry("_SYSTEMD_UNIT=kubelet.service", "MESSAGE=kubelet started", "PRIORITY=6", "_PID=10", "SYSLOG_IDENTIFIER=kubelet"),
		entry("_SYSTEMD_UNIT=other.service", "MESSAGE=not ours", "PRIORITY=6", "_PID=11", "SYSLOG_IDENTIFIER=other"),
		entry("_SYSTEMD_UNIT=etcd.service", "MESSAGE=color \x1b[31mred\x1b[0m", "PRIORITY=3", "_PID=12", "SYSLOG_IDENTIFIER=etcd"),
		entry("_SYSTEMD_UNIT=session-1.scope", "MESSAGE=kubeup test line 1", "PRIORITY=5", "_PID=13", "SYSLOG_IDENTIFIER=kubeup"),
		entry("_SYSTEMD_UNIT=init.scope", "MESSAGE=Started kubelet.service.", "PRIORITY=6", "_PID=1", "UNIT=kubelet.service", "SYSLOG_IDENTIFIER=systemd"),
		entry("_SYSTEMD_UNIT=init.scope", "MESSAGE=Started other.service.", "PRIORITY=6", "_PID=1", "UNIT=other.service", "SYSLOG_IDENTIFIER=systemd"),
	)
	run := func(ctx context.Context, args []string, w io.Writer) error {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "journalctl", append([]string{"--directory=" + dir}, args...)...)
		cmd.Stdout, cmd.Stderr = w, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("journalctl: %w: %s", err, stderr.Bytes())
		}
		return nil
	}
	out := &collector{}
	follow := func() (context.CancelFunc, chan error) {
		j := NewJournal(JournalConfig{Units: []string{"kubelet.service", "etcd.service"}, Identifiers: []string{"kubeup"},
			Origin: Origin{Machine: "node-0"}, StateDir: state, Run: run, Submit: out.submit})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		return cancel, done
	}
	cancel, done := follow()
	waitFor(t, "4 entries", func() bool { return out.len() >= 4 })
	// --follow picks up a journal file that appears later.
	writeJournal("b.journal",
		entry("_SYSTEMD_UNIT=other.service", "MESSAGE=still not ours", "_PID=11", "SYSLOG_IDENTIFIER=other"),
		entry("MESSAGE=kubeup test line 2", "PRIORITY=6", "_PID=14", "SYSLOG_IDENTIFIER=kubeup"))
	waitFor(t, "5 entries", func() bool { return out.len() >= 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Restart: resume after the cursor.
	writeJournal("c.journal", entry("_SYSTEMD_UNIT=kubelet.service", "MESSAGE=kubelet again", "PRIORITY=4", "_PID=10", "SYSLOG_IDENTIFIER=kubelet"))
	cancel, done = follow()
	waitFor(t, "6 entries", func() bool { return out.len() >= 6 })
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done

	var got []string
	for _, r := range out.recs {
		f, _ := DecodeFields(r.Body)
		got = append(got, fmt.Sprintf("%s|%s|%s|%d", f["unit"], f["level"], f["message"], f["pid"]))
	}
	want := []string{
		"kubelet.service|info|kubelet started|10",
		"etcd.service|err|color \x1b[31mred\x1b[0m|12",
		"kubeup|notice|kubeup test line 1|13",
		"kubelet.service|info|Started kubelet.service.|1",
		"kubeup|info|kubeup test line 2|14",
		"kubelet.service|warning|kubelet again|10",
	}
	if !slices.Equal(got, want) {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !out.recs[0].Time.Equal(time.UnixMicro(now.UnixMicro() + 1)) {
		t.Errorf("time %v, want %v", out.recs[0].Time, time.UnixMicro(now.UnixMicro()+1))
	}
}
