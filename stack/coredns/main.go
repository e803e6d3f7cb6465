// Command coredns is CoreDNS v1.15's own main (coremain.Run) with only the plugins a cluster
// DNS uses: those of kubeadm's default Corefile (errors, health, ready, kubernetes,
// prometheus, forward, cache, loop, reload, loadbalance) and log, hosts and rewrite, which
// lab Corefiles often add. Upstream's main imports all of plugin.cfg (cloud DNS providers,
// dnstap, tracing ...): 75 MiB stripped, against 53 MiB here (client-go is most of what is
// left), and the RAM-only worker holds the image twice (the layer blob and its unpacked copy).
// dnsserver.SetDirectives is upstream's API for such builds; the order is plugin.cfg's.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
)

// directives in plugin.cfg's (execution) order.
var directives = []string{
	"reload", "ready", "health", "prometheus", "errors", "log",
	"loadbalance", "rewrite", "cache", "hosts", "kubernetes", "loop", "forward",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		panic(err)
	}
	coremain.Run()
}
