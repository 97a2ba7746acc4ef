//go:build !noetcd

package agent

import (
	"context"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"kubeup.dev/kubeup/components/agentconfig"
)

// newEtcdReaddFunc re-adds members through the local member, with a
// client of its own per call (a rare operation).
func newEtcdReaddFunc(cfg agentconfig.Etcd) ReaddFunc {
	endpoint := cfg.Endpoints[0]
	if cfg.Member != nil {
		endpoint = cfg.Member.ClientURL
	}
	return func(ctx context.Context, name, peerURL string) ([]EtcdMemberInfo, error) {
		tlsCfg, err := etcdTLS(cfg)
		if err != nil {
			return nil, err
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsCfg, DialTimeout: etcdCallTimeout, Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("etcd client: %w", err)
		}
		defer cli.Close()
		list, err := cli.MemberList(ctx)
		if err != nil {
			return nil, fmt.Errorf("member list: %w", err)
		}
		for _, m := range list.Members {
			if m.Name != name && !slices.Contains(m.PeerURLs, peerURL) {
				continue
			}
			if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
				return nil, fmt.Errorf("remove member %s (%x): %w", m.Name, m.ID, err)
			}
		}
		added, err := cli.MemberAdd(ctx, []string{peerURL})
		if err != nil {
			return nil, fmt.Errorf("add member %s at %s: %w", name, peerURL, err)
		}
		var out []EtcdMemberInfo
		for _, m := range added.Members {
			out = append(out, EtcdMemberInfo{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, PeerURLs: m.PeerURLs, Started: m.Name != ""})
		}
		return out, nil
	}
}
