//! `diskless run` and `diskless check`: one machine booted as a lab machine would be (from a
//! build output, a published boot server directory, or, with `--join`, a boot server beside a
//! throwaway cluster), its console on the terminal (`run`) or judged (`check`, with the check
//! hook as one more initrd and `diskless.check=MODE` on the kernel command line).

use super::join::{self, Seen, Watch};
use super::judge::Judge;
use super::lifecycle;
use super::report::{print_check, CheckDetail, CheckReport, Step, Timeline};
use super::session::{End, Session};
use crate::error::Error;
use crate::lab::boot_files::prepare;
use crate::lab::join::{Lab, HOSTNAME};
use crate::machine::guest::Guest;
use crate::machine::hook;
use crate::options::{BootOptions, CheckOptions};
use diskless_builder::words::{Word, Words};
use diskless_contract::console::{CheckLine, CheckMode};
use diskless_publish::Additions;
use std::time::{Duration, Instant};

/// `diskless run`: the console on this terminal until the guest powers off, the person quits
/// (Ctrl-A x), or `--timeout`. With `join`, a throwaway cluster runs beside it until QEMU
/// exits; its admin kubeconfig is printed for `kubectl`.
pub fn run(a: &BootOptions) -> crate::error::Result<()> {
    let lab = if a.join {
        Some(Lab::start(&a.out, &a.name, &a.mac)?)
    } else {
        None
    };
    let joined = lab.as_ref().map(|l| l.boot_options(a));
    let (a, forwards) = match (&lab, &joined) {
        (Some(lab), Some(joined)) => {
            eprintln!(
                "diskless run: cluster up; the machine joins as node {HOSTNAME}. In another terminal:\n  \
                 export KUBECONFIG={}\n  kubectl get nodes   # kubectl: {}",
                lab.cluster.admin_kubeconfig().display(),
                lab.cluster.kubectl_path().display()
            );
            (joined, lab.forwards()?)
        }
        _ => (a, Vec::new()),
    };
    let add = Additions {
        cmdline: a.append.clone(),
        initrds: Vec::new(),
    };
    let boot = prepare(a, &add, None)?;
    let mut guest = Guest::start(a, &boot, true, &forwards)?;
    let status = match a.timeout {
        None => Some(guest.wait()?),
        Some(secs) => wait_bounded(&mut guest, Duration::from_secs(secs))?,
    };
    let message = match status {
        Some(s) if s.success() => return Ok(()),
        Some(s) => format!("QEMU exited with {s}"),
        None => format!(
            "timeout: killed QEMU after {} s (--timeout)",
            a.timeout.unwrap_or_default()
        ),
    };
    Err(Error::Stopped { message })
}

fn wait_bounded(
    guest: &mut Guest,
    limit: Duration,
) -> crate::error::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = guest.child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() > deadline {
            guest.kill();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `diskless check`: boots with the check hook and judges the console. Err on any failure
/// (after printing the report).
pub fn check(args: &CheckOptions) -> crate::error::Result<()> {
    check_report(args)?.conclude("check", args.json, print_check)
}

/// One checked boot, start to verdict.
pub fn check_report(args: &CheckOptions) -> crate::error::Result<CheckReport> {
    let mut lab = start_lab(args)?;
    let joined = lab.as_ref().map(|l| l.boot_options(&args.boot));
    let a = joined.as_ref().unwrap_or(&args.boot);
    let mode = check_mode(args, lab.is_some());
    let hook_segment = hook_segment(args)?;
    let boot = prepare(a, &with_hook(a, mode), Some(hook_segment.clone()))?;
    let forwards = match &lab {
        Some(lab) => lab.forwards()?,
        None => Vec::new(),
    };
    let mut session = Session::start(a, &boot, &forwards, args.verbose)?;
    let watch = lab.as_ref().map(|l| Watch::start(l.api()));
    let deadline = session.guest.started + Duration::from_secs(a.check_timeout());
    let end = session.follow(deadline, |judge| joined_and_done(judge, watch.as_ref()));
    let seen = watch.as_ref().map(Watch::seen);
    drop(watch);

    let steps = match lab.as_mut() {
        Some(lab) if args.lifecycle && joined_ok(&session.judge, seen.as_ref()) => {
            let again = || {
                prepare(
                    a,
                    &with_hook(a, CheckMode::Join),
                    Some(hook_segment.clone()),
                )
            };
            lifecycle::steps(lab, &mut session, a, again, &forwards, args.verbose)?
        }
        _ => Vec::new(),
    };
    session.guest.kill();

    let failures = verdict(
        args,
        a,
        &session.judge,
        end,
        lab.is_some(),
        seen.as_ref(),
        &steps,
    );
    let timeline = timeline(&session, end, seen.unwrap_or_default());
    if !failures.is_empty() {
        session.print_tail(40);
    }
    let download_bytes = session.guest.http.as_ref().map(|h| {
        let t = h.transfers.lock().unwrap();
        t.iter().map(|x| x.bytes).sum::<u64>()
    });
    let judge = std::mem::take(&mut session.judge);
    Ok(CheckReport {
        ok: failures.is_empty(),
        image: boot.image,
        memory_mib: a.memory,
        accel: Some(session.guest.accel_note.clone()),
        failures,
        detail: CheckDetail {
            timeline,
            download_bytes,
            stages: judge.stages,
            checks: judge.checks,
            memory: judge.memory,
            memory_after: judge.memory_after,
            restarts: judge.restarts,
            lifecycle: steps,
        },
    })
}

/// With `--join`: the cluster and the boot server the machine boots from, kept until the end.
/// With `--lifecycle` publish mints the node's token, short-lived: a reboot must rejoin after
/// the token it first booted with expired.
fn start_lab(args: &CheckOptions) -> crate::error::Result<Option<Lab>> {
    if !args.boot.join {
        return Ok(None);
    }
    let b = &args.boot;
    Ok(Some(match (args.lifecycle, args.join_fault) {
        (true, None) => Lab::start_minting(&b.out, &b.name, &b.mac, lifecycle::MINTED_TOKEN_TTL)?,
        (_, fault) => Lab::start_with(&b.out, &b.name, &b.mac, fault)?,
    }))
}

/// What the check hook does in the guest.
fn check_mode(args: &CheckOptions, joining: bool) -> CheckMode {
    match (args.kill_containerd, joining, args.lifecycle) {
        (true, _, _) => CheckMode::Restart,
        (false, true, true) => CheckMode::Lifecycle,
        (false, true, false) => CheckMode::Join,
        (false, false, _) if args.image_pressure => CheckMode::ImagePressure,
        (false, false, _) => CheckMode::Once,
    }
}

/// The check hook's segment: `--hook`, else `diskless-check` beside this executable.
fn hook_segment(args: &CheckOptions) -> crate::error::Result<Vec<u8>> {
    let binary = match &args.hook {
        Some(p) => p.clone(),
        None => hook::default_binary()?,
    };
    hook::segment(&binary)
}

/// `diskless.check=MODE` and the person's `--append`s on the command line, the hook's segment
/// as one more initrd.
pub(crate) fn with_hook(a: &BootOptions, mode: CheckMode) -> Additions {
    Additions {
        cmdline: std::iter::once(
            Words::new(format!("diskless.check={}", mode.as_str())).expect("a check mode word"),
        )
        .chain(a.append.iter().cloned())
        .collect(),
        initrds: vec![Word::new(hook::SEGMENT).expect("the hook segment's path")],
    }
}

/// A joining machine stays up after its check hook: it is done once the API shows the pod
/// running too (or the hook failed, when the API will show nothing more). Without `--join`
/// the guest powers off by itself.
fn joined_and_done(judge: &Judge, watch: Option<&Watch>) -> bool {
    watch.is_some_and(|w| judge.check_done && (w.done() || hook_failed(judge)))
}

fn hook_failed(judge: &Judge) -> bool {
    judge.checks.iter().any(|c| c.status == CheckLine::FAIL)
}

/// The node joined and its hook passed: the lifecycle has something to try.
fn joined_ok(judge: &Judge, seen: Option<&Seen>) -> bool {
    seen.is_some_and(|s| join::failures(s).is_empty()) && !hook_failed(judge)
}

/// Every reason the boot failed, in words.
fn verdict(
    args: &CheckOptions,
    a: &BootOptions,
    judge: &Judge,
    end: End,
    joining: bool,
    seen: Option<&Seen>,
    steps: &[Step],
) -> Vec<String> {
    let mut failures = judge.failures();
    if end == End::TimedOut {
        failures.push(format!(
            "timeout: QEMU killed after {} s (--timeout)",
            a.check_timeout()
        ));
    }
    if judge.stopped.is_none() && !judge.check_done {
        failures
            .push("the check hook never finished (see the console above with --verbose)".into());
    }
    if judge.check_done && judge.landmarks.power_off.is_none() && !joining {
        failures.push("the guest did not power off after the check".into());
    }
    if let Some(seen) = seen {
        failures.extend(join::failures(seen));
    }
    if args.lifecycle && joining && steps.is_empty() && failures.is_empty() {
        failures.push("--lifecycle: the node never joined, so nothing was tried".into());
    }
    for s in steps.iter().filter(|s| !s.ok) {
        failures.push(format!("lifecycle {} FAILED: {}", s.name, s.detail));
    }
    if args.kill_containerd && !judge.checks.iter().any(|c| c.name == "containerd-restart") {
        failures.push("no containerd-restart result although --kill-containerd was given".into());
    }
    if judge.landmarks.kernel_start.is_none() && judge.stages.is_empty() {
        failures.push(
            "the kernel never started: did iPXE fetch the script? (run with --verbose)".into(),
        );
    }
    failures
}

/// When each landmark came: host seconds since QEMU started for the firmware, downloads and
/// QEMU's exit; guest seconds since kernel start for the init's stages, the hook's checks and
/// what the API showed.
fn timeline(session: &Session, end: End, seen: Seen) -> Timeline {
    let started = session.guest.started;
    let judge = &session.judge;
    let since = |i: Instant| i.saturating_duration_since(started).as_secs_f64();
    let (download_start, download_done) = match &session.guest.http {
        Some(h) => {
            let t = h.transfers.lock().unwrap();
            let first = t.iter().map(|x| since(x.start)).reduce(f64::min);
            let last = t.iter().map(|x| since(x.end)).reduce(f64::max);
            (first, last)
        }
        None => (None, None),
    };
    let g = |n: &str| judge.stage(n).map(|s| s.guest_t);
    // API observations in guest seconds: host time since QEMU start, less the kernel's start.
    let guest = |i: Option<Instant>| Some(since(i?) - judge.kernel_start()?);
    Timeline {
        ipxe_start: judge.landmarks.ipxe_start.or(download_start),
        download_start,
        download_done,
        kernel_start: judge.kernel_start(),
        check_done: judge.landmarks.check_done,
        qemu_exit: match end {
            End::Exited(t) => Some(t),
            _ => None,
        },
        root_switched: g("switchroot"),
        network_up: g("network"),
        containerd_ready: g("containerd"),
        images_imported: g("images"),
        kubelet_started: g("kubelet"),
        kubelet_healthy: judge.check_time("kubelet-healthz"),
        static_pod_running: judge.check_time("static-pod"),
        boot_done: g("boot"),
        node_registered: guest(seen.node_registered),
        node_ready: guest(seen.node_ready),
        api_pod_running: guest(seen.api_pod_running),
        service_reached: guest(seen.service_reached),
        cluster_dns: guest(seen.cluster_dns),
    }
}
