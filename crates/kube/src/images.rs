//! The container images every diskless cluster knows by name: the sandbox (`pause`) image the
//! worker's containerd is configured with, the test workload, and the cluster DNS. The host plan
//! preloads them, the `oci` crate makes them, the harness runs pods from them.

/// containerd 1.6's default sandbox image, and the test workload, both preloaded (made from
/// busybox by the `oci` crate's `host_reference_images`).
pub const PAUSE_REF: &str = "registry.k8s.io/pause:3.6";
pub const WORKLOAD_REF: &str = "docker.io/library/busybox:diskless";
/// The cluster DNS image (the `oci` crate's `coredns_image`, from the stack's `coredns`), preloaded
/// when the stack has one: the version is `COREDNS_VERSION` of stack/versions (a test checks).
pub const COREDNS_REF: &str = "diskless.local/coredns:v1.15.0";
