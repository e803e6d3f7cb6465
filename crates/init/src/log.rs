//! Console logging. Every boot step prints exactly one line,
//! `diskless: <stage> ok t=<seconds since kernel start>` or `… FAILED t=…: <why>`, which the
//! harness (`diskless check`) parses into the boot timeline; the format and the stage names
//! are the contract's ([`StageLine`], [`Stage`]), so the two sides cannot drift apart. Each line
//! goes out in a single `write` so lines from service-forwarding threads never interleave
//! mid-line.

use diskless_contract::console::{Stage, StageLine, Status, PREFIX};
use std::io::Write;

/// Seconds since the kernel started (`CLOCK_BOOTTIME`), the same clock as the kernel's
/// `[   1.234567]` prefixes and `/proc/uptime`; readable before `/proc` is mounted.
pub fn uptime() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux ≥ 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Writes one whole line to the console (standard output).
pub fn line(text: &str) {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    let _ = std::io::stdout().lock().write_all(buf.as_bytes());
}

pub fn ok(stage: &Stage, detail: &str) {
    stage_line(stage, Status::Ok, detail);
}

/// `why`: a step's error (its message is the line's detail) or a sentence.
pub fn failed(stage: &Stage, why: &(impl std::fmt::Display + ?Sized)) {
    stage_line(stage, Status::Failed, &why.to_string());
}

pub fn skipped(stage: &Stage, why: &str) {
    stage_line(stage, Status::Skipped, why);
}

fn stage_line(stage: &Stage, status: Status, detail: &str) {
    let l = StageLine {
        stage: stage.clone(),
        status,
        t: uptime(),
        detail: detail.to_string(),
    };
    line(&l.render());
}

/// Tolerated problems: the step goes on.
pub fn warn(what: &str) {
    line(&format!("{PREFIX}warning: {what}"));
}

pub fn info(what: &str) {
    line(&format!("{PREFIX}{what}"));
}
