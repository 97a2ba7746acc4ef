package provider

import (
	"context"
	"fmt"
	"slices"
	"sort"

	pbempty "google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Name and Version of the plugin.
const (
	Name    = "kubeup"
	Version = "0.1.0"
)

// Resource type tokens.
const (
	SwitchType  = "kubeup:local:Switch"
	MachineType = "kubeup:local:Machine"
)

// kind is one resource type's behaviour.
type kind interface {
	check(props resource.PropertyMap) []*pulumirpc.CheckFailure
	create(ctx context.Context, props resource.PropertyMap) (id string, outputs resource.PropertyMap, err error)
	// read returns ok=false when the resource no longer exists.
	read(ctx context.Context, id string, state resource.PropertyMap) (outputs resource.PropertyMap, ok bool, err error)
	delete(ctx context.Context, id string, state resource.PropertyMap) error
}

// Server implements the engine's ResourceProvider service.
type Server struct {
	pulumirpc.UnimplementedResourceProviderServer
	kinds map[string]kind
}

// New returns the provider.
func New(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
	return NewServer(), nil
}

// NewServer returns the provider without an engine connection (tests).
func NewServer() *Server {
	return &Server{kinds: map[string]kind{SwitchType: switchKind{}, MachineType: machineKind{}, EndpointType: endpointKind{}}}
}

var opts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true, KeepSecrets: true}

func (s *Server) kindOf(urn string) (kind, error) {
	t := resource.URN(urn).Type().String()
	k, ok := s.kinds[t]
	if !ok {
		return nil, fmt.Errorf("kubeup provider: unknown resource type %q (have %s, %s, %s)", t, SwitchType, MachineType, EndpointType)
	}
	return k, nil
}

// resolve finds the kind of urn and decodes a request's properties.
func (s *Server) resolve(urn string, props *structpb.Struct) (kind, resource.PropertyMap, error) {
	k, err := s.kindOf(urn)
	if err != nil {
		return nil, nil, err
	}
	m, err := plugin.UnmarshalProperties(props, opts)
	if err != nil {
		return nil, nil, err
	}
	return k, m, nil
}

func (s *Server) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (s *Server) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: `{"name":"kubeup","version":"` + Version + `"}`}, nil
}

func (s *Server) Handshake(context.Context, *pulumirpc.ProviderHandshakeRequest) (*pulumirpc.ProviderHandshakeResponse, error) {
	return &pulumirpc.ProviderHandshakeResponse{AcceptSecrets: true, AcceptResources: true}, nil
}

func (s *Server) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (s *Server) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (s *Server) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, AcceptResources: true}, nil
}

func (s *Server) Cancel(context.Context, *pbempty.Empty) (*pbempty.Empty, error) {
	return &pbempty.Empty{}, nil
}

func (s *Server) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	k, news, err := s.resolve(req.GetUrn(), req.GetNews())
	if err != nil {
		return nil, err
	}
	if news.ContainsUnknowns() {
		return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: k.check(news)}, nil
}

// Diff: every input of a switch or a machine is baked into a running
// process, so any change replaces it, the old one deleted first.
func (s *Server) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := plugin.UnmarshalProperties(req.GetOldInputs(), opts)
	if err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), opts)
	if err != nil {
		return nil, err
	}
	changed := changedKeys(olds, news)
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, k := range changed {
		detailed[k] = &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_UPDATE_REPLACE, InputDiff: true}
	}
	return &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_SOME, Replaces: changed, DeleteBeforeReplace: true,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

// changedKeys lists the top-level inputs that differ, sorted.
func changedKeys(olds, news resource.PropertyMap) []string {
	var out []string
	for k, nv := range news {
		if ov, ok := olds[k]; !ok || !ov.DeepEquals(nv) {
			out = append(out, string(k))
		}
	}
	for k := range olds {
		if _, ok := news[k]; !ok {
			out = append(out, string(k))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func (s *Server) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	k, props, err := s.resolve(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		return &pulumirpc.CreateResponse{Properties: req.GetProperties()}, nil
	}
	id, outs, err := k.create(ctx, props)
	if err != nil {
		return nil, err
	}
	out, err := plugin.MarshalProperties(outs, opts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: out}, nil
}

func (s *Server) Read(ctx context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	k, state, err := s.resolve(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	outs, ok, err := k.read(ctx, req.GetId(), state)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &pulumirpc.ReadResponse{}, nil // gone: refresh drops it, up recreates it
	}
	out, err := plugin.MarshalProperties(outs, opts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: out, Inputs: req.GetInputs()}, nil
}

// Update is never called with changes (Diff replaces), but the engine calls
// it for no-op updates of outputs in some flows: keep the state.
func (s *Server) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	return &pulumirpc.UpdateResponse{Properties: req.GetOlds()}, nil
}

func (s *Server) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*pbempty.Empty, error) {
	k, state, err := s.resolve(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	return &pbempty.Empty{}, k.delete(ctx, req.GetId(), state)
}
