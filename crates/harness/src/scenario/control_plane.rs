//! `diskless check --control-plane`: the diskless control plane, proved in QEMU. A fresh
//! cluster PKI (the throwaway control plane's `pki.rs`) and an inventory whose one host is the
//! control plane (`[control_plane]`); the image is published to a boot server directory and
//! the machine network-boots through `boot.ipxe` and its host entry, as a lab machine does.
//! The host reaches its API server and its etcd through slirp `hostfwd`s on loopback ports.
//!
//! Then what a reboot must not lose: once the API is healthy and the controller-manager and
//! the scheduler work, a ConfigMap is created through the API, `diskless publish` runs (it
//! applies the bootstrap RBAC and takes an etcd snapshot into the node segment), the machine
//! is power-cycled (everything in its RAM is gone) and boots again from the boot server: the
//! init restores the snapshot before etcd starts, and the ConfigMap and the RBAC are back.
//! Each boot's timeline (kernel start → etcd healthy → API healthy → controller-manager and
//! scheduler working, from the host: a new namespace gets its `default` ServiceAccount, and a
//! pod in it is marked unschedulable, as no node exists) and memory (from the check hook) are reported.

use super::boot::with_hook;
use super::report::{print_control_plane, BootTimeline, ControlPlaneDetail, ControlPlaneReport};
use super::session::{End, Session};
use crate::error::Context;
use crate::lab::boot_files::prepare;
use crate::lab::control_plane::vm::{poll, Lab};
use crate::machine::boot_server::BootFiles;
use crate::machine::hook;
use crate::options::BootOptions;
use diskless_contract::console::CheckMode;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The object that must survive the reboot.
const SURVIVOR: &str = "diskless-survivor";

#[derive(Debug, Clone)]
pub struct Options {
    /// OUT is the build output holding the control-plane image `name`; `mac` is the host's.
    pub boot: BootOptions,
    pub json: bool,
    pub verbose: bool,
    pub hook: Option<PathBuf>,
}

/// `diskless check --control-plane`: Err on any failure, after printing the report.
pub fn check(opts: &Options) -> crate::error::Result<()> {
    check_report(opts)?.conclude("control-plane check", opts.json, print_control_plane)
}

pub fn check_report(opts: &Options) -> crate::error::Result<ControlPlaneReport> {
    let lab = Lab::start(&opts.boot.out, &opts.boot.name, &opts.boot.mac)?;
    let a = BootOptions {
        out: lab.server.clone(),
        server: true,
        ..opts.boot.clone()
    };
    let add = with_hook(&a, CheckMode::ControlPlane);
    let binary = match &opts.hook {
        Some(p) => p.clone(),
        None => hook::default_binary()?,
    };
    let hook_segment = hook::segment(&binary)?;
    let mut failures = Vec::new();
    let limit = Duration::from_secs(a.check_timeout());

    let prepared = prepare(&a, &add, Some(hook_segment.clone()))?;
    let first = boot(&lab, &a, &prepared, opts.verbose, limit, "diskless-probe-1")?;
    failures.extend(first.failures.iter().map(|f| format!("first boot: {f}")));
    let mut second = Booted::default();
    let mut snapshot_bytes = None;
    let mut publish_seconds = None;
    if first.failures.is_empty() {
        // What the reboot must bring back: an object created through the API, its nonce
        // unguessable so an old snapshot cannot pass.
        let nonce = diskless_publish::token::Token::generate()
            .context("cannot make a nonce")?
            .id;
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": SURVIVOR, "namespace": "default"},
            "data": {"nonce": nonce},
        });
        lab.kubectl(&["create", "-f", "-"], Some(&serde_json::to_vec(&cm)?))
            .map_err(crate::error::Error::lab)
            .context("cannot create the ConfigMap")?;
        let t = Instant::now();
        lab.publish()
            .context("publish with the control plane up (RBAC, snapshot)")?;
        publish_seconds = Some(t.elapsed().as_secs_f64());
        if let Err(e) = lab.kubectl(
            &["get", "clusterrolebinding", "diskless:node-proxier"],
            None,
        ) {
            failures.push(format!("publish did not apply the bootstrap RBAC: {e}"));
        }
        snapshot_bytes = newest_snapshot(&lab.dir.path().join("snapshots"));
        if snapshot_bytes.is_none() {
            failures.push("publish kept no etcd snapshot".into());
        }
        // The power cycle: the first machine is gone with everything in its RAM.
        drop(first.session);
        let again = prepare(&a, &add, Some(hook_segment))?;
        second = boot(&lab, &a, &again, opts.verbose, limit, "diskless-probe-2")?;
        failures.extend(second.failures.iter().map(|f| format!("second boot: {f}")));
        if second.failures.is_empty() {
            let got = lab
                .kubectl(
                    &[
                        "get",
                        "configmap",
                        SURVIVOR,
                        "-n",
                        "default",
                        "-o",
                        "jsonpath={.data.nonce}",
                    ],
                    None,
                )
                .unwrap_or_else(|e| format!("<{e}>"));
            if got.trim() != nonce {
                failures.push(format!(
                    "after the reboot ConfigMap {SURVIVOR} has nonce {got:?}, not {nonce:?}: the snapshot was not restored"
                ));
            }
            if let Err(e) = lab.kubectl(
                &["get", "clusterrolebinding", "diskless:node-proxier"],
                None,
            ) {
                failures.push(format!("after the reboot the RBAC is gone: {e}"));
            }
            match &second.timeline.etcd_restore {
                Some(d) if d.contains("restored") => {}
                other => failures.push(format!(
                    "the second boot's init did not restore the snapshot: {other:?}"
                )),
            }
        }
    }
    Ok(ControlPlaneReport {
        ok: failures.is_empty(),
        image: a.name.clone(),
        memory_mib: a.memory,
        accel: None,
        failures,
        detail: ControlPlaneDetail {
            first_boot: first.timeline,
            second_boot: second.timeline,
            snapshot_bytes,
            publish_seconds,
        },
    })
}

fn newest_snapshot(dir: &Path) -> Option<u64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
        .collect();
    files.sort();
    Some(std::fs::metadata(files.last()?).ok()?.len())
}

#[derive(Default)]
struct Booted {
    session: Option<Session>,
    timeline: BootTimeline,
    failures: Vec<String>,
}

/// Boots once and follows the control plane up from the host until the controller-manager and
/// the scheduler work on namespace `probe` (new on each boot) and the hook reported memory.
/// The machine keeps running (in [`Booted::session`]) for what the caller does next.
fn boot(
    lab: &Lab,
    a: &BootOptions,
    files: &BootFiles,
    verbose: bool,
    limit: Duration,
    probe: &str,
) -> crate::error::Result<Booted> {
    let mut session = Session::start(a, files, &lab.forwards(), verbose)?;
    let started = session.guest.started;
    let mut seen: [Option<Instant>; 4] = [None; 4];
    let mut last_error = String::new();
    let mut next_poll = Instant::now();
    let end = session.follow(started + limit, |judge| {
        if seen.iter().all(Option::is_some) && judge.memory_after.is_some() {
            return true;
        }
        if Instant::now() >= next_poll {
            // Every probe is a TLS handshake the emulated guest pays for.
            next_poll = Instant::now() + Duration::from_secs(2);
            if let Err(e) = poll(lab, &mut seen, probe) {
                last_error = e;
            }
        }
        false
    });
    let judge = &session.judge;
    let mut failures = Vec::new();
    match end {
        End::Satisfied => {}
        End::Stopped => failures.push(format!(
            "the boot stopped: {}",
            judge.stopped.clone().unwrap_or_default()
        )),
        End::Exited(_) | End::TimedOut => failures.push(format!(
            "not up within {} s (etcd {:?}, API {:?}, controller-manager {:?}, scheduler {:?}, hook memory {}); last: {last_error}",
            limit.as_secs(),
            seen[0].is_some(),
            seen[1].is_some(),
            seen[2].is_some(),
            seen[3].is_some(),
            judge.memory_after.is_some()
        )),
    }
    failures.extend(judge.failures());
    if !failures.is_empty() {
        session.print_tail(60);
    }
    let judge = &session.judge;
    let kernel = judge.kernel_start();
    let guest_t =
        |i: Option<Instant>| Some(i?.saturating_duration_since(started).as_secs_f64() - kernel?);
    let stage = |n: &str| judge.stage(n).map(|s| s.guest_t);
    let timeline = BootTimeline {
        kernel_start: kernel,
        network_up: stage("network"),
        etcd_restored: stage("etcd-restore"),
        etcd_healthy: guest_t(seen[0]),
        api_healthy: guest_t(seen[1]),
        controller_manager_working: guest_t(seen[2]),
        scheduler_working: guest_t(seen[3]),
        memory: judge.memory_after.clone(),
        etcd_restore: judge.stage("etcd-restore").map(|s| s.detail.clone()),
    };
    Ok(Booted {
        session: Some(session),
        timeline,
        failures,
    })
}
