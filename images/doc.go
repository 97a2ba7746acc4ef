// Package images is where kubeup's VM images are made. This file holds the
// pinned versions (versions.yaml, embedded) that everything else reads: the
// artifact pipeline (images/artifacts) builds or downloads exactly these, and
// rendered configs take container image references from here.
package images
