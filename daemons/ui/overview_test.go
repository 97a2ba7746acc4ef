package ui

import (
	"net/http"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestLeaderRows(t *testing.T) {
	released := lease("kube-system", "kube-scheduler", "", 15, time.Minute)
	for _, c := range []struct {
		name   string
		leases []*coordinationv1.Lease
		want   []Leader
	}{{
		name: "held",
		leases: []*coordinationv1.Lease{
			lease("kube-system", "kube-scheduler", "master-2_0b6f2d8a-7c3e-4e5f-8a9b-1c2d3e4f5a6b", 15, 4*time.Second),
			lease("kube-system", "kube-controller-manager", "master-0_5d0c6b4e-0a1f-4c43-9a8e-2f3b1c7d9e01", 15, 3*time.Second),
			// Not the UI's: another namespace's, and another component's.
			lease("default", "kube-controller-manager", "master-9_x", 15, time.Second),
			lease("kube-system", "cloud-controller-manager", "master-1_y", 15, time.Second),
		},
		want: []Leader{
			{Component: "kube-controller-manager", Holder: "master-0", Identity: "master-0_5d0c6b4e-0a1f-4c43-9a8e-2f3b1c7d9e01",
				Renewed: fixedNow.Add(-3 * time.Second), Age: "3s", OK: true},
			{Component: "kube-scheduler", Holder: "master-2", Identity: "master-2_0b6f2d8a-7c3e-4e5f-8a9b-1c2d3e4f5a6b",
				Renewed: fixedNow.Add(-4 * time.Second), Age: "4s", OK: true},
		},
	}, {
		name: "expired, released, or never elected",
		leases: []*coordinationv1.Lease{
			lease("kube-system", "kube-controller-manager", "master-1_5d0c", 15, 40*time.Second),
			released,
		},
		want: []Leader{
			{Component: "kube-controller-manager", Holder: "master-1", Identity: "master-1_5d0c",
				Renewed: fixedNow.Add(-40 * time.Second), Age: "40s", Problem: "expired: the leader stopped renewing"},
			{Component: "kube-scheduler", Renewed: fixedNow.Add(-time.Minute), Age: "60s", Problem: "not held: released, or no leader elected"},
		},
	}, {
		name: "no leases",
		want: []Leader{
			{Component: "kube-controller-manager", Age: "?", Problem: "no Lease: not elected yet"},
			{Component: "kube-scheduler", Age: "?", Problem: "no Lease: not elected yet"},
		},
	}, {
		name: "an identity not client-go's, and no renewal",
		leases: []*coordinationv1.Lease{{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-scheduler"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("master-1")}}},
		want: []Leader{
			{Component: "kube-controller-manager", Age: "?", Problem: "no Lease: not elected yet"},
			{Component: "kube-scheduler", Holder: "master-1", Identity: "master-1", Age: "?", Problem: "never renewed"},
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			got := LeaderRows(c.leases, fixedNow)
			if len(got) != len(c.want) {
				t.Fatalf("rows %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("row %d:\n%+v\nwant\n%+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

// A control plane without leaders shows as such on the page.
func TestPageControlPlaneWithoutLeaders(t *testing.T) {
	s, _ := startServer(t, testConfig(""),
		lease("kube-system", "kube-controller-manager", "master-1_5d0c", 15, 40*time.Second))
	body := get(t, s.Handler(), http.MethodGet, "/").Body.String()
	for _, want := range []string{
		`<tr class="bad"><td>kube-controller-manager</td><td title="master-1_5d0c">master-1 <span class="msg">expired: the leader stopped renewing</span></td><td>40s ago</td></tr>`,
		`<tr class="bad"><td>kube-scheduler</td><td>none <span class="msg">no Lease: not elected yet</span></td><td>never</td></tr>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks\n%s\n%s", want, body)
		}
	}
}
