//! Free loopback ports, for the slirp forwards to a guest and the throwaway control plane's
//! components.

use crate::error::Context;
use std::net::TcpListener;

/// `n` distinct ports that were free on 127.0.0.1 a moment ago: all bound at once (so the
/// kernel hands out distinct ones), then released for their users to bind.
pub fn free_ports(n: usize) -> crate::error::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free port on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
