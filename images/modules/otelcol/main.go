// Command otelcol is kubeup's OpenTelemetry Collector distribution: the log
// aggregator of the logging addon. It links only what that pipeline uses
// (forward protocol and OTLP in; batch and memory limiter; OTLP/HTTP and
// debug out; health check and file storage for a persistent queue), as the
// collector's builder (ocb) would generate it from a manifest, so the binary
// is a fraction of otelcol-contrib's.
package main

import (
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// version is stamped by kubeup's artifact recipe (-X main.version=...).
var version = "dev"

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol",
			Description: "kubeup OpenTelemetry Collector (log aggregator)",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
				DefaultScheme: "env",
			},
		},
	}
	// cobra prints the error itself.
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		os.Exit(1)
	}
}
