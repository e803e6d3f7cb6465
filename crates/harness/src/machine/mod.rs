//! The machine layer: what one virtual lab machine needs, and nothing about Kubernetes.
//! [`qemu`] is the one QEMU command line (slirp or tap, BIOS or UEFI), [`accel`] picks KVM or
//! TCG, [`console`] is the one console reader, [`guest`] starts a machine behind slirp with its
//! boot server ([`boot_server`]) and, for checks, the check hook ([`hook`]); [`netns`] is a lab
//! network of taps on a bridge; [`process`] owns every child process the harness starts
//! ([`daemon`] and [`logged`] are two ways to keep one's output).

pub mod accel;
pub mod boot_server;
pub mod console;
pub mod daemon;
pub mod guest;
pub mod hook;
pub mod logged;
pub mod netns;
pub mod ports;
pub mod process;
pub mod qemu;
