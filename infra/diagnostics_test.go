package infra

import "testing"

func TestDiagnostics(t *testing.T) {
	out := `Updating (e2e):
 +  pulumi:pulumi:Stack kubeup-e2e creating (0s)
 +  kubeup:local:Machine node-0 creating (0s) error: start e2e-node-0: exit status 1
 +  pulumi:pulumi:Stack kubeup-e2e creating (1s) error: update failed
Diagnostics:
  pulumi:pulumi:Stack (kubeup-e2e):
    warning: using pulumi-resource-kubeup from $PATH at /repo/bin/pulumi-resource-kubeup
    error: update failed

  kubeup:local:Machine (node-0):
    error: start e2e-node-0: exit status 1
    qemu-system-x86_64: -netdev user,id=mgmt: Could not set up host forwarding rule 'tcp:127.0.0.1:41409-:22'

  kubeup:local:Machine (master-0):
    warning: slow
      indented detail

Resources:
    + 2 created

Duration: 1s
`
	want := `kubeup:local:Machine (node-0):
  error: start e2e-node-0: exit status 1
  qemu-system-x86_64: -netdev user,id=mgmt: Could not set up host forwarding rule 'tcp:127.0.0.1:41409-:22'
kubeup:local:Machine (master-0):
  warning: slow
    indented detail`
	if got := Diagnostics(out); got != want {
		t.Errorf("Diagnostics:\n%s\nwant:\n%s", got, want)
	}
	if got := Diagnostics("Updating (e2e):\nResources:\n    1 unchanged\n"); got != "" {
		t.Errorf("no diagnostics section, got %q", got)
	}
}
