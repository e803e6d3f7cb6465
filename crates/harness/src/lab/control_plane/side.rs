//! What the cluster scenario needs of a control plane reachable from the lab network, whichever
//! kind it is: the host-process one ([`super::host::HostControlPlane`]) or the diskless
//! control-plane machine ([`super::vm::VmControlPlane`]). A leaf: both kinds implement it, the
//! scenario uses it.

use diskless_publish::inventory::Inventory;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// What the cluster test needs of a control plane reachable from the lab network.
pub trait ControlPlaneSide {
    /// `https://<address>:<port>` as the workers reach it.
    fn api_server(&self) -> String;
    /// A `system:masters` kubeconfig usable from the test (which runs in the namespace).
    fn admin_kubeconfig(&self) -> &Path;
    /// The cluster CA (PEM) the workers trust.
    fn ca_pem(&self) -> &[u8];
    /// kubectl of the cluster's version.
    fn kubectl(&self) -> &Path;
    /// Told each node's address once it registered: the host-process control plane's API
    /// server reaches kubelets through its proxy, which must learn where each node is.
    fn node_address(&self, _node: &str, _address: Ipv4Addr) {}
    /// The inventory a control plane that is a lab machine itself is published with (its
    /// host and `[control_plane]` section); the workers are added to it.
    fn inventory(&self) -> Inventory {
        Inventory::default()
    }
    /// A control-plane machine publishes its own image to `server`, alone (minting the
    /// workers' tokens needs its API), and says so; a host-process one has nothing to publish.
    fn publish_alone(&self, _server: &Path) -> crate::error::Result<bool> {
        Ok(false)
    }
    /// Boots the control-plane machine once the boot server serves its entry; returns when
    /// its API server, controller-manager and scheduler work.
    fn boot(&mut self, _timeout: Duration) -> crate::error::Result<()> {
        Ok(())
    }
    /// Its console's last lines, for a failure's message (a machine only).
    fn console_tail(&self) -> String {
        String::new()
    }
}
