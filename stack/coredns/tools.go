//go:build tools

// Package coredns pins CoreDNS, the cluster DNS the worker image preloads, in a
// module graph of its own: it requires k8s.io/client-go v0.37, while
// k8s.io/kubernetes v1.36 in ../go.mod pins every staging module to v0.36.
package coredns

import (
	_ "github.com/coredns/coredns"
)
