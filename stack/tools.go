//go:build tools

// Package stack pins the Kubernetes worker/control-plane binaries that
// diskless images carry. Nothing here is compiled: the blank imports of the
// upstream main packages keep `go mod tidy` from dropping any of them, and
// scripts/build-stack builds each one from this module's graph.
//
// crictl is pinned in ./cri-tools, a module of its own (see its tools.go).
package stack

import (
	// Kubernetes (k8s.io/kubernetes; staging modules replaced in go.mod)
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"

	// etcd: the `etcd` main package is the root of module go.etcd.io/etcd/server/v3
	// (server/main.go, a wrapper around server/v3/etcdmain).
	_ "go.etcd.io/etcd/server/v3"

	// containerd and its runc shim
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"

	// runc (cgo: libcontainer/nsenter, and libseccomp with the seccomp tag)
	_ "github.com/opencontainers/runc"

	// CNI plugins
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
)
