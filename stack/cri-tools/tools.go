//go:build tools

// Package critools pins crictl in a module graph of its own: cri-tools v1.37
// needs k8s.io/cri-client v0.37 (NewRemoteRuntimeServiceBuilder), while
// k8s.io/kubernetes v1.36 in ../go.mod pins every staging module to v0.36.
package critools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
