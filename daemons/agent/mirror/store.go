package mirror

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/content/proxy"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs/pkg/errgrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// ContainerdStore is the Store of a containerd namespace, reached over
// containerd's gRPC images and content services (not containerd's client
// package, which would link most of containerd into the agent).
type ContainerdStore struct {
	conn      *grpc.ClientConn
	images    imagesapi.ImagesClient
	content   content.Store
	namespace string
}

var _ Store = (*ContainerdStore)(nil)

// NewContainerdStore talks to containerd's gRPC API at socket (a unix
// socket path) in namespace (the CRI namespace "k8s.io"). It dials lazily
// (containerd may start after the agent), so it never fails because
// containerd is not up yet; Close releases the connection.
func NewContainerdStore(socket, namespace string) (*ContainerdStore, error) {
	abs, err := filepath.Abs(socket)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly after containerd restarts (gRPC's default
		// backoff grows to two minutes); containerd's client does the same.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("containerd %s: %w", socket, err)
	}
	return &ContainerdStore{
		conn:      conn,
		images:    imagesapi.NewImagesClient(conn),
		content:   proxy.NewContentStore(contentapi.NewContentClient(conn)),
		namespace: namespace,
	}, nil
}

// Close releases the connection to containerd.
func (s *ContainerdStore) Close() error { return s.conn.Close() }

// ns puts the namespace into ctx's gRPC metadata.
func (s *ContainerdStore) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.namespace)
}

// Resolve returns the target of the image called name.
func (s *ContainerdStore) Resolve(ctx context.Context, name string) (ocispec.Descriptor, error) {
	resp, err := s.images.Get(s.ns(ctx), &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", name, errgrpc.ToNative(err))
	}
	t := resp.GetImage().GetTarget()
	if t == nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s has no target", name)
	}
	return ocispec.Descriptor{MediaType: t.MediaType, Digest: digest.Digest(t.Digest), Size: t.Size, Annotations: t.Annotations}, nil
}

// Info returns the content store's record of a blob.
func (s *ContainerdStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	return s.content.Info(s.ns(ctx), dgst)
}

// ReaderAt opens a blob; each read is a gRPC call.
func (s *ContainerdStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	return s.content.ReaderAt(s.ns(ctx), desc)
}
