//go:build tools

// The etcd tools of the pinned stack, a module graph of their own like cri-tools and
// coredns: etcdctl (publish snapshots the diskless control plane's etcd through the
// client API) and etcdutl (the control plane's image restores that snapshot at boot,
// checking its hash first). Same version as the etcd server (stack/versions ETCD_VERSION).
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
)
