//! Console logging. Every boot step prints exactly one line,
//! `diskless: <stage> ok t=<seconds since kernel start>` or `… FAILED t=…: <why>`, which the
//! harness (`diskless check`) parses into the boot timeline. Each line goes out in a single
//! `write` so lines from service-forwarding threads never interleave mid-line.

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

pub fn ok(stage: &str, detail: &str) {
    let sep = if detail.is_empty() { "" } else { ": " };
    line(&format!(
        "diskless: {stage} ok t={:.3}{sep}{detail}",
        uptime()
    ));
}

pub fn failed(stage: &str, why: &str) {
    line(&format!(
        "diskless: {stage} FAILED t={:.3}: {why}",
        uptime()
    ));
}

pub fn skipped(stage: &str, why: &str) {
    line(&format!(
        "diskless: {stage} skipped t={:.3}: {why}",
        uptime()
    ));
}

/// Tolerated problems: the step goes on.
pub fn warn(what: &str) {
    line(&format!("diskless: warning: {what}"));
}

pub fn info(what: &str) {
    line(&format!("diskless: {what}"));
}
