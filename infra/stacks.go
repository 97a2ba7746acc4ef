package infra

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Plugin is a Pulumi resource plugin a cloud program needs, pinned to the
// version its SDK was generated for (and kubeup was tested against).
type Plugin struct {
	Name, Version string
}

// Plugins of the cloud targets: the SDK versions in go.mod.
var (
	PluginAWS = Plugin{Name: "aws", Version: "v6.83.4"}
	PluginGCP = Plugin{Name: "gcp", Version: "v9.6.0"}
)

// OfflineInstall is how to install a plugin on a machine that cannot
// download it: the release archive copied from a machine that can.
func (p Plugin) OfflineInstall() string {
	v := strings.TrimPrefix(p.Version, "v")
	return fmt.Sprintf("pulumi plugin install resource %s %s --file pulumi-resource-%s-v%s-linux-amd64.tar.gz (from https://github.com/pulumi/pulumi-%s/releases/tag/v%s), with PULUMI_HOME=%s",
		p.Name, v, p.Name, v, p.Name, v, "<data dir>/pulumi-home")
}

// EnsurePlugins installs the plugins missing from kubeup's Pulumi home, the
// normal Pulumi way (a download from the plugin's release), once.
func (e *Engine) EnsurePlugins(ctx context.Context, plugins ...Plugin) error {
	opts, err := e.workspaceOptions(ctx)
	if err != nil {
		return err
	}
	ws, err := auto.NewLocalWorkspace(ctx, opts...)
	if err != nil {
		return err
	}
	have, err := ws.ListPlugins(ctx)
	if err != nil {
		return fmt.Errorf("list Pulumi plugins: %w", err)
	}
	for _, p := range plugins {
		found := false
		for _, h := range have {
			if h.Name == p.Name && h.Kind == "resource" && h.Version != nil && "v"+h.Version.String() == p.Version {
				found = true
			}
		}
		if found {
			continue
		}
		if err := ws.InstallPlugin(ctx, p.Name, p.Version); err != nil {
			return fmt.Errorf("install the Pulumi %s plugin %s: %w\nOffline: %s", p.Name, p.Version, err, p.OfflineInstall())
		}
	}
	return nil
}

// StackConfig is a stack's provider configuration ("aws:region": ...).
type StackConfig map[string]string

func (e *Engine) configured(ctx context.Context, name string, program pulumi.RunFunc, cfg StackConfig) (auto.Stack, error) {
	s, err := e.stack(ctx, name, program)
	if err != nil {
		return s, err
	}
	for k, v := range cfg {
		if err := s.SetConfig(ctx, k, auto.ConfigValue{Value: v}); err != nil {
			return s, fmt.Errorf("stack %s: set %s: %w", name, k, err)
		}
	}
	return s, nil
}

// Up creates or updates a stack from an inline program and returns its
// outputs.
func (e *Engine) Up(ctx context.Context, name string, program pulumi.RunFunc, cfg StackConfig) (map[string]any, error) {
	s, err := e.configured(ctx, name, program, cfg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	res, err := s.Up(ctx, optup.ProgressStreams(e.progress(&out)), optup.Parallel(8))
	if err != nil {
		return nil, engineError("pulumi up "+name, err, out.String())
	}
	return plainOutputs(res.Outputs), nil
}

// Preview runs the engine's preview of a stack: what up would create,
// update and delete, by operation.
func (e *Engine) Preview(ctx context.Context, name string, program pulumi.RunFunc, cfg StackConfig) (map[string]int, error) {
	s, err := e.configured(ctx, name, program, cfg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	res, err := s.Preview(ctx, optpreview.ProgressStreams(e.progress(&out)))
	if err != nil {
		return nil, engineError("pulumi preview "+name, err, out.String())
	}
	counts := map[string]int{}
	for op, n := range res.ChangeSummary {
		counts[string(op)] = n
	}
	return counts, nil
}

// Outputs are a stack's outputs (ErrNoStack when it does not exist).
func (e *Engine) Outputs(ctx context.Context, name string) (map[string]any, error) {
	ws, err := e.workspace(ctx)
	if err != nil {
		return nil, err
	}
	if ok, err := hasStack(ctx, ws, name); err != nil || !ok {
		if err == nil {
			err = ErrNoStack
		}
		return nil, err
	}
	s, err := auto.SelectStack(ctx, name, ws)
	if err != nil {
		return nil, err
	}
	outs, err := s.Outputs(ctx)
	if err != nil {
		return nil, fmt.Errorf("outputs of %s: %w", name, err)
	}
	return plainOutputs(outs), nil
}

// Stacks lists the stacks whose names start with prefix.
func (e *Engine) Stacks(ctx context.Context, prefix string) ([]string, error) {
	ws, err := e.workspace(ctx)
	if err != nil {
		return nil, err
	}
	all, err := ws.ListStacks(ctx)
	if err != nil {
		return nil, fmt.Errorf("list stacks: %w", err)
	}
	var out []string
	for _, s := range all {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

func (e *Engine) workspace(ctx context.Context) (auto.Workspace, error) {
	opts, err := e.workspaceOptions(ctx)
	if err != nil {
		return nil, err
	}
	return auto.NewLocalWorkspace(ctx, opts...)
}

func hasStack(ctx context.Context, ws auto.Workspace, name string) (bool, error) {
	stacks, err := ws.ListStacks(ctx)
	if err != nil {
		return false, fmt.Errorf("list stacks: %w", err)
	}
	for _, s := range stacks {
		if s.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// DestroyStack destroys a stack's resources and removes it with its files
// (Destroy without the refresh: a cloud's resources are read by the
// provider as it deletes them).
func (e *Engine) DestroyStack(ctx context.Context, name string) error {
	return e.destroy(ctx, name, false)
}

func (e *Engine) destroy(ctx context.Context, name string, refresh bool) error {
	ws, err := e.workspace(ctx)
	if err != nil {
		return err
	}
	if ok, err := hasStack(ctx, ws, name); err != nil || !ok {
		if err == nil {
			err = ErrNoStack
		}
		return err
	}
	s, err := auto.SelectStack(ctx, name, ws)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	opts := []optdestroy.Option{optdestroy.ProgressStreams(e.progress(&out)), optdestroy.Parallel(8)}
	if refresh {
		opts = append(opts, optdestroy.Refresh())
	}
	if _, err := s.Destroy(ctx, opts...); err != nil {
		return engineError("pulumi destroy "+name, err, out.String())
	}
	if err := ws.RemoveStack(ctx, name); err != nil {
		return fmt.Errorf("remove stack %s: %w", name, err)
	}
	return e.removeStackFiles(name)
}

func plainOutputs(m auto.OutputMap) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v.Value
	}
	return out
}

// StringOutput is a stack output that must be a non-empty string.
func StringOutput(outs map[string]any, key string) (string, error) {
	v, ok := outs[key].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("the stack has no output %q", key)
	}
	return v, nil
}
