//! The join lab's cluster DNS: CoreDNS from the image's preloaded [`COREDNS_REF`] (never
//! pulled), as kubeadm deploys it — a `coredns` ServiceAccount with `system:coredns` rights for
//! the `kubernetes` plugin, the Corefile in a ConfigMap, a one-replica Deployment on the joined
//! node and the `kube-dns` Service at [`CLUSTER_DNS`], the address joined kubelets write into
//! pods' resolv.conf. There is no upstream resolver in the lab, so the Corefile forwards
//! nothing: names outside the cluster domain get SERVFAIL/NXDOMAIN.

use super::control_plane::network::{CLUSTER_DNS, KUBERNETES_SERVICE_IP};
use diskless_kube::images::COREDNS_REF;
use serde_json::{json, Value};

/// The name the API pod resolves: the `kubernetes` Service, fully qualified (with the trailing
/// dot, so no search domain is tried first).
pub const SERVICE_NAME: &str = "kubernetes.default.svc.cluster.local.";
/// What it must resolve to.
pub const SERVICE_ADDRESS: &str = KUBERNETES_SERVICE_IP;

/// kubeadm's Corefile without `forward` (nothing upstream), `loop` (which guards `forward`)
/// and `reload` (the ConfigMap never changes here); `ready` backs the readiness probe, so the
/// Service gets the pod as an endpoint only once the `kubernetes` plugin has synced.
const COREFILE: &str = "\
.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
}
";

/// The `ready` plugin's port (`/ready`).
const READY_PORT: u16 = 8181;

/// Every object, as a `v1/List` for `kubectl apply --server-side`; the pod runs on `node`.
pub fn objects(node: &str) -> Value {
    let labels = json!({"k8s-app": "kube-dns"});
    let items = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        }),
        // kubeadm's system:coredns role: what the `kubernetes` plugin lists and watches.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": COREFILE},
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        // The node's own resolv.conf: CoreDNS must not ask itself.
                        "dnsPolicy": "Default",
                        "nodeSelector": {"kubernetes.io/hostname": node},
                        "tolerations": [{"operator": "Exists"}],
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{
                            "name": "coredns",
                            "image": COREDNS_REF,
                            "imagePullPolicy": "Never",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": READY_PORT},
                                "periodSeconds": 2,
                            },
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns",
                                              "readOnly": true}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": CLUSTER_DNS,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        }),
    ];
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Whether a pod is the cluster DNS's (it runs on the joined node beside the API pod).
pub fn is_dns_pod(pod: &Value) -> bool {
    pod["metadata"]["namespace"] == "kube-system"
        && pod["metadata"]["labels"]["k8s-app"] == "kube-dns"
}

/// The addresses busybox `nslookup` printed for the name it looked up: the `Address` lines
/// after `Name:` (the ones before are the server's, `10.96.0.10:53`).
pub fn answers(nslookup: &str) -> Vec<String> {
    nslookup
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter(|l| l.starts_with("Address"))
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::control_plane::network::CLUSTER_DOMAIN;

    #[test]
    fn the_corefile_serves_the_cluster_domain_and_forwards_nowhere() {
        assert!(COREFILE.contains(&format!(
            "kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa"
        )));
        assert!(!COREFILE.contains("forward"));
        assert!(SERVICE_NAME.ends_with(&format!(".svc.{CLUSTER_DOMAIN}.")));
    }

    #[test]
    fn the_service_and_the_pod_are_the_kubelets_cluster_dns() {
        let o = objects("n1");
        let items = o["items"].as_array().unwrap();
        let kind = |k: &str| items.iter().find(|i| i["kind"] == k).unwrap();
        let svc = kind("Service");
        assert_eq!(svc["metadata"]["name"], "kube-dns");
        assert_eq!(svc["spec"]["clusterIP"], CLUSTER_DNS);
        let pod = &kind("Deployment")["spec"]["template"];
        assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/hostname"], "n1");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], COREDNS_REF);
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(
            kind("ConfigMap")["data"]["Corefile"].as_str().unwrap(),
            COREFILE
        );
        let mut running = pod.clone();
        running["metadata"]["namespace"] = json!("kube-system");
        assert!(is_dns_pod(&running));
        assert!(!is_dns_pod(&json!({"metadata": {"namespace": "default"}})));
    }

    #[test]
    fn nslookup_answers_are_the_lines_after_the_name() {
        let out = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n\
                   Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n\n";
        assert_eq!(answers(out), ["10.96.0.1"]);
        let none = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n\
                    ** server can't find kubernetes.default.svc.cluster.local: NXDOMAIN\n";
        assert!(answers(none).is_empty());
    }
}
