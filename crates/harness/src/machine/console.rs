//! The one console reader: a child's output (QEMU's serial console, a daemon's messages) as
//! lines without ANSI escapes and control characters, each stamped with the time it arrived.
//! [`console_lines`] hands them over a channel (the boot-and-judge loop reads it);
//! [`read_lines`] is the loop itself, which [`super::logged::Logged`] also runs.

use std::io::Read;
use std::sync::mpsc;
use std::time::Instant;

/// Calls `line` with each line of `src` (cleaned) and the time it arrived, until `src` ends
/// or `line` returns false. A last line without a newline is passed too.
pub fn read_lines(mut src: impl Read, mut line: impl FnMut(Instant, String) -> bool) {
    let mut buf = [0u8; 8192];
    let mut pending = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = clean(&pending);
                pending.clear();
                if !line(Instant::now(), text) {
                    return;
                }
            } else {
                pending.push(b);
            }
        }
    }
    if !pending.is_empty() {
        line(Instant::now(), clean(&pending));
    }
}

/// Reads the child's standard output as console lines (escape sequences and `\r` removed),
/// each stamped with the time it arrived.
pub fn console_lines(
    mut child: std::process::Child,
) -> (mpsc::Receiver<(Instant, String)>, std::process::Child) {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || read_lines(stdout, |t, text| tx.send((t, text)).is_ok()));
    (rx, child)
}

/// Removes ANSI escape sequences (iPXE and SeaBIOS draw with them) and control characters.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_removed() {
        assert_eq!(
            super::clean(b"\x1b[2J\x1b[0;1miPXE\x1b[0m 1.0 -- Open Source\r"),
            "iPXE 1.0 -- Open Source"
        );
        assert_eq!(super::clean(b"plain\ttext"), "plain\ttext");
    }
}
