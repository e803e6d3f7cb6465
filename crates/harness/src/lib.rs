//! Boots built images in QEMU the way a lab machine does: the NIC's iPXE ROM gets DHCP from
//! slirp, fetches the iPXE script and the objects over HTTP (or TFTP), and boots the kernel
//! with its initrd segments. `diskless run` puts the console on the terminal; `diskless check`
//! adds `diskless.check=1` to the kernel command line and the check hook as one more initrd,
//! reads the console, and asserts that every init stage and every in-guest check passed.
//!
//! Three layers, each using only those below it: [`machine`] (QEMU, the console reader, the
//! boot server, owned processes, network namespaces), [`lab`] (boot files, the join host's
//! cluster, both kinds of control plane) and [`scenario`] (boot, join, lifecycle, control
//! plane, cluster). README.md says more.

pub mod error;
pub mod lab;
pub mod machine;
pub mod options;
pub mod scenario;

pub use error::Error;
pub use machine::console::clean as clean_console;
pub use options::{Accel, BootOptions, CheckOptions, Fault, Transport, DEFAULT_CHECK_TIMEOUT};
pub use scenario::control_plane::Options as ControlPlaneOptions;
pub use scenario::report::{
    CheckDetail, CheckReport, ClusterReport, ControlPlaneDetail, ControlPlaneReport, Report,
    Timeline,
};

/// `diskless run`: the console on this terminal until the guest powers off or the person quits
/// (or `--timeout`). SIGINT and SIGTERM stop every process it started, then exit 130 or 143.
pub fn run(options: &BootOptions) -> Result<(), Error> {
    stop_on_signals("diskless run")?;
    scenario::boot::run(options)
}

/// `diskless check`: Err on any failure, after printing the report. SIGINT and SIGTERM stop
/// every process it started, then exit 130 or 143.
pub fn check(options: &CheckOptions) -> Result<(), Error> {
    stop_on_signals("diskless check")?;
    scenario::boot::check(options)
}

/// One checked boot's report (what `check --json` prints).
pub fn check_report(options: &CheckOptions) -> Result<CheckReport, Error> {
    scenario::boot::check_report(options)
}

/// `diskless check --control-plane`: Err on any failure, after printing the report.
pub fn check_control_plane(options: &ControlPlaneOptions) -> Result<(), Error> {
    stop_on_signals("diskless check")?;
    scenario::control_plane::check(options)
}

fn stop_on_signals(who: &'static str) -> Result<(), Error> {
    machine::process::stop_on_signals(who).map_err(|e| Error::Lab {
        message: format!("cannot install the SIGINT/SIGTERM handler: {e}"),
    })
}
