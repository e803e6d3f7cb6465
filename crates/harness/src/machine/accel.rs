//! Which accelerator a machine gets: KVM only if it really boots a kernel here.

use super::console::console_lines;
use super::process;
use super::qemu::{Accel, Machine, Nic, QEMU};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Decides the accelerator: KVM only if it really boots a kernel here. On this project's
/// machines `/dev/kvm` exists but the nested hypervisor cannot run the Debian kernel (QEMU
/// aborts with "failed to set MSR" or hangs), so the probe boots the kernel with no root and
/// waits for its panic message.
pub fn resolve_accel(wanted: Accel, kernel: &Path) -> (Accel, String) {
    match wanted {
        Accel::Tcg => (Accel::Tcg, "tcg,thread=single (asked for)".into()),
        Accel::Kvm => (Accel::Kvm, "kvm (asked for)".into()),
        Accel::Icount => (
            Accel::Icount,
            "tcg -icount shift=0,sleep=on (asked for; guest times count instructions, 1 ns each)"
                .into(),
        ),
        Accel::Auto => match probe_kvm(kernel) {
            Ok(()) => (Accel::Kvm, "kvm (probe boot worked)".into()),
            Err(why) => (
                Accel::Tcg,
                format!("tcg,thread=single -cpu max (kvm unusable: {why})"),
            ),
        },
    }
}

fn probe_kvm(kernel: &Path) -> Result<(), String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Err("/dev/kvm cannot be opened".into());
    }
    let machine = Machine {
        accel: Accel::Kvm,
        kernel: Some((
            kernel.to_owned(),
            "console=ttyS0 panic=-1 root=/dev/diskless-probe".into(),
        )),
        ..Machine::new(128, "", Nic::None)
    };
    let mut cmd = machine.command().map_err(|e| format!("{e:#}"))?;
    let child = process::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))
        .map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    let (lines, mut child) = console_lines(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut result = Err("no kernel panic within 15 s".to_string());
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok((_, l)) if l.contains("Kernel panic") => {
                result = Ok(());
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().ok();
    if result.is_err() {
        if let Some(err) = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .and_then(|s| s.lines().next().map(String::from))
        {
            result = Err(err);
        }
    }
    result
}
