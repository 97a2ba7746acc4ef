// Package render turns a cluster config and its PKI into every file the
// cluster's machines need: per machine, the cloud-init user-data, meta-data,
// network-config and NoCloud seed; per role, the systemd units and static
// files baked into the role's image. It is the single source of truth for
// what runs on a machine: images are built from Roles, machines are
// personalised from Machines.
package render
