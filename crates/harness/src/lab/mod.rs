//! The lab layer: what surrounds a machine as a lab would. The files a boot serves
//! ([`boot_files`]), a join host's cluster and boot server ([`join`]), the cluster DNS objects
//! ([`cluster_dns`]), the cluster lab network ([`network`]), the two kinds of control plane
//! ([`control_plane`]), and kubectl against them ([`api`]).

pub mod api;
pub mod boot_files;
pub mod cluster_dns;
pub mod control_plane;
pub mod join;
pub mod network;
