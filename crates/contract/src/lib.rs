//! What the builder and the node agree on, and nothing else: serde types and the rules both
//! sides check. The builder (and `diskless publish`) write these documents; the init, which
//! depends on no builder crate, reads them through the same types.
//!
//! - [`image`]: `/.diskless/image.json`, the builder → init contract (versioned).
//! - [`node`]: `/.diskless/node/node.json`, one machine's identity, written by publish.
//! - [`identity`]: the rules for hostnames, MACs, labels and taints (the kubelet's), one each.
//! - [`cluster`]: the rules for a node's pod range, cluster DNS servers and domain.
//! - [`controlplane`]: where a diskless control plane's PKI, kubeconfigs and etcd snapshot
//!   are in its node segment.
//! - [`reference`]: image references by the distribution spec grammar; [`digest`]: sha256 hex.
//! - [`console`]: the `diskless: <stage> ok|FAILED|skipped t=…` lines the init prints and the
//!   harness parses, and the check hook's `diskless-check: …` lines.
//!
//! `docs/image-contract.md` is the reference for humans.

pub mod cluster;
pub mod console;
pub mod controlplane;
pub mod digest;
pub mod identity;
pub mod image;
pub mod node;
pub mod reference;
pub mod version;
