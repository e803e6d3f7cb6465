//! The lab network the cluster scenario runs on: a namespace ([`crate::machine::netns`]) with a
//! bridge at [`SERVER`] (the boot server's and a host control plane's address) and one tap per
//! machine, the workers' and the control-plane machine's; each machine is a BIOS machine on its
//! tap, network-booted by `diskless serve` (dnsmasq + nginx).

use super::control_plane::host::{self, HostControlPlane};
use crate::error::Context;
use crate::machine::netns::Netns;
use crate::machine::qemu::{Machine, Nic};
use std::net::Ipv4Addr;

/// The bridge's (boot server's, host control plane's) address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 33, 0, 1);
pub const SERVER_V6: &str = "fd33::1";
pub const HTTP_PORT: &str = "8080";
pub const DHCP_RANGE: &str = "10.33.0.100-10.33.0.199";
/// The API server's port on the lab network (the namespace is ours: kubeadm's port is free).
pub const API_PORT: u16 = 6443;

/// One machine on the lab network: its inventory host name, its MAC and the tap its NIC is on.
#[derive(Debug, Clone, Copy)]
pub struct LabMachine {
    pub name: &'static str,
    pub mac: &'static str,
    pub tap: &'static str,
}

impl LabMachine {
    /// A BIOS machine on its tap: SeaBIOS boots the NIC's iPXE ROM, which DHCPs from dnsmasq
    /// and chains to the boot server's `boot.ipxe` and the host's entry.
    pub fn machine(&self, memory_mib: u32) -> Machine {
        Machine::new(
            memory_mib,
            self.mac,
            Nic::Tap {
                ifname: self.tap.to_string(),
            },
        )
    }
}

pub const WORKERS: [LabMachine; 2] = [
    LabMachine {
        name: "worker-a",
        mac: "52:54:00:c1:00:01",
        tap: "tap0",
    },
    LabMachine {
        name: "worker-b",
        mac: "52:54:00:c1:00:02",
        tap: "tap1",
    },
];

/// The control-plane machine ([`super::control_plane::vm::VmControlPlane`]).
pub const CONTROL_PLANE: LabMachine = LabMachine {
    name: "diskless-cp",
    mac: "52:54:00:c1:00:10",
    tap: "tap2",
};

/// The lab network: a namespace the calling thread has entered, with `br0` at [`SERVER`] and
/// one tap per worker. Whatever the thread starts afterwards (control plane, serve, QEMU)
/// lives in it; the host's interfaces are never touched.
pub struct LabNetwork {
    pub ns: Netns,
}

impl LabNetwork {
    pub fn enter() -> crate::error::Result<LabNetwork> {
        let ns = Netns::new()?;
        let mut taps: Vec<&str> = WORKERS.iter().map(|w| w.tap).collect();
        taps.push(CONTROL_PLANE.tap);
        ns.bridge(&SERVER.to_string(), SERVER_V6, &taps)?;
        ns.enter()?;
        Ok(LabNetwork { ns })
    }
}

/// The host-process control plane on the lab network (call after [`LabNetwork::enter`]).
pub fn host_control_plane() -> crate::error::Result<HostControlPlane> {
    HostControlPlane::start(host::Options {
        lab_address: Some(SERVER),
        api_port: Some(API_PORT),
        ..Default::default()
    })
    .context("cannot start the control plane in the lab namespace")
}
