//! `ssh://[user@]host[:port]/abs/path`: every operation is one remote `sh` script run through
//! one shared connection (ControlMaster). A session still costs 0.15–1 s on a loaded machine,
//! so operations are batched: a publish that changes nothing makes two (lock, snapshot).
//! The server needs `sh`, coreutils (`stat`, `sha256sum`, `sync`, `mv`), `flock` (util-linux)
//! and `tar` (batched reads and writes). Temporary files live in this run's directory under
//! `DEST/.staging/`, which every locked run empties first, so an interrupted copy never leaves
//! a stray name in `objects/`.

use super::error::{io, DestError};
use super::{Snapshot, Source, DIRS};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// An `ssh://` destination and the private ControlMaster socket all its commands share.
pub struct Ssh {
    pub(super) url: String,
    /// The ssh command with every option, ending with the target host; the script follows.
    argv: Vec<String>,
    root: String,
    /// This run's directory under `.staging/`, made when the lock is taken; see `lock`.
    session: String,
    /// Holds the ControlPath socket; removed (after `ssh -O exit`) on drop.
    control: tempfile::TempDir,
}

/// Single-quotes `s` for a POSIX shell.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Ssh {
    pub(super) fn parse(url: &str, rest: &str) -> Result<Ssh, DestError> {
        let bad = |why: &str| DestError::SshUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let slash = rest.find('/').ok_or_else(|| bad("no path on the server"))?;
        let (authority, root) = rest.split_at(slash);
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the host"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || user.is_some_and(str::is_empty) {
            return Err(bad("no host"));
        }
        if let Some(p) = port {
            if p.parse::<u16>().is_err() {
                return Err(bad(&format!("port {p:?} is not a number")));
            }
        }
        if root.len() < 2 {
            return Err(bad("refusing the server's root directory"));
        }
        // `DISKLESS_SSH` like GIT_SSH_COMMAND: ssh reads its config from the real home
        // directory, not $HOME, so tests and unusual setups need another way in.
        let command = std::env::var("DISKLESS_SSH").unwrap_or_else(|_| "ssh".into());
        let mut argv: Vec<String> = command.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            return Err(DestError::EmptySshCommand);
        }
        let control = tempfile::Builder::new()
            .prefix("diskless-ssh-")
            .tempdir()
            .map_err(io("cannot create a directory for the ssh control socket"))?;
        for opt in [
            // Never prompt: a publish is unattended, and a prompt would hang it.
            "BatchMode=yes".to_string(),
            "ConnectTimeout=10".to_string(),
            "ServerAliveInterval=10".to_string(),
            "ControlMaster=auto".to_string(),
            format!("ControlPath={}/cm", control.path().display()),
            // The master outlives us only briefly if we are killed; normally `-O exit` ends it.
            "ControlPersist=10".to_string(),
        ] {
            argv.push("-o".into());
            argv.push(opt);
        }
        if let Some(p) = port {
            argv.push("-p".into());
            argv.push(p.to_string());
        }
        let target = match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        };
        argv.push(target);
        let mut nonce = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce))
            .map_err(io("cannot read /dev/urandom"))?;
        Ok(Ssh {
            url: url.to_string(),
            argv,
            root: root.trim_end_matches('/').to_string(),
            session: format!(".staging/{}", hex::encode(nonce)),
            control,
        })
    }

    fn command(&self, script: &str) -> duct::Expression {
        // Wrapped in `sh -c` so the user's login shell (whatever it is) only sees one word.
        let mut args: Vec<String> = self.argv[1..].to_vec();
        args.push(format!("sh -c {}", q(script)));
        duct::cmd(&self.argv[0], args)
    }

    /// Runs `script` in DEST with `stdin`; stdout on success, else an error naming DEST and
    /// quoting the remote (or ssh's own) stderr.
    fn run(&self, what: &str, script: &str, stdin: Source) -> Result<Vec<u8>, DestError> {
        self.run_with(what, script, |expr| match stdin {
            Source::File(p) => expr.stdin_path(p),
            Source::Bytes(b) => expr.stdin_bytes(b.to_vec()),
        })
    }

    fn run_with(
        &self,
        what: &str,
        script: &str,
        stdin: impl FnOnce(duct::Expression) -> duct::Expression,
    ) -> Result<Vec<u8>, DestError> {
        let script = format!("cd {} || exit 1\n{script}", q(&self.root));
        let out = stdin(self.command(&script))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|cause| self.cannot_run(cause))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(self.failure(what, out.status.code(), &out.stderr))
    }

    fn failure(&self, what: &str, code: Option<i32>, stderr: &[u8]) -> DestError {
        let stderr = String::from_utf8_lossy(stderr).trim().to_string();
        if code == Some(255) {
            DestError::Unreachable {
                url: self.url.clone(),
                stderr,
            }
        } else {
            DestError::Remote {
                url: self.url.clone(),
                what: what.to_string(),
                stderr,
            }
        }
    }

    /// The ssh program itself did not start.
    fn cannot_run(&self, cause: std::io::Error) -> DestError {
        DestError::SshProgram {
            url: self.url.clone(),
            program: self.argv[0].clone(),
            cause,
        }
    }

    /// Our end of a session failed (a pipe, a stream we read or write).
    fn local(&self, what: &str) -> impl FnOnce(std::io::Error) -> DestError {
        io(format!("{}: {what}", self.url))
    }

    pub(super) fn lock(&self, create: bool) -> Result<SshLock, DestError> {
        // flock holds the lock while `cat` waits for our stdin to close: when we finish, or
        // die, the session ends and the lock goes with it. If we are killed, the one command
        // we had in flight may still be running on the server after that; it writes only
        // through this run's own staging directory, which the next locked run deletes before
        // it looks at anything, so a late rename either lands before that run starts or fails.
        let mkdir = if create {
            format!("mkdir -p {}/objects || exit 1\n", q(&self.root))
        } else {
            String::new()
        };
        let script = format!(
            "{mkdir}cd {} || exit 1\nmkdir -p .staging || exit 1\n\
             exec flock .lock sh -c {}",
            q(&self.root),
            q(&format!(
                "rm -rf .staging/* && mkdir {} && echo locked && exec cat >/dev/null",
                q(&self.session)
            ))
        );
        let mut args: Vec<String> = self.argv[1..].to_vec();
        args.push(format!("sh -c {}", q(&script)));
        // A long-lived child with pipes both ways, which std's Command expresses directly.
        let mut child = std::process::Command::new(&self.argv[0])
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|cause| self.cannot_run(cause))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(self.local("taking the lock"))?;
        if line.trim() != "locked" {
            drop(child.stdin.take());
            let out = child
                .wait_with_output()
                .map_err(self.local("taking the lock"))?;
            return Err(self.failure("taking the lock", out.status.code(), &out.stderr));
        }
        Ok(SshLock { child })
    }

    pub(super) fn snapshot(&self) -> Result<Snapshot, DestError> {
        const MARK: &[u8] = b"--diskless-tar--\n";
        let mut globs = vec!["./*".to_string(), "./.[!.]*".to_string()];
        for d in DIRS {
            globs.push(format!("{d}/*"));
            globs.push(format!("{d}/.[!.]*"));
        }
        // Unmatched globs stay literal and stat complains about them: hence 2>/dev/null. The
        // marker line cannot come from stat (its lines start with the file type).
        let script = format!(
            "stat -c '%F|%s|%n' {} 2>/dev/null\necho --diskless-tar--\nset --\n\
             for f in generations/*.json ./*.ipxe hosts/*.ipxe; do \
             [ -f \"$f\" ] && set -- \"$@\" \"$f\"; done\n\
             [ $# -eq 0 ] || exec tar -cf - \"$@\"",
            globs.join(" ")
        );
        let out = self.run("listing", &script, Source::Bytes(b""))?;
        let at = out
            .windows(MARK.len())
            .position(|w| w == MARK)
            .filter(|&i| i == 0 || out[i - 1] == b'\n')
            .ok_or_else(|| DestError::Garbled {
                url: self.url.clone(),
                what: "garbled listing".into(),
            })?;
        let mut files = BTreeMap::new();
        for line in String::from_utf8_lossy(&out[..at]).lines() {
            let mut parts = line.splitn(3, '|');
            let (Some(kind), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if kind.starts_with("regular") {
                let name = name.strip_prefix("./").unwrap_or(name);
                files.insert(name.to_string(), size.parse().unwrap_or(0));
            }
        }
        let texts = self.untar(&out[at + MARK.len()..])?;
        Ok(Snapshot { files, texts })
    }

    fn untar(&self, data: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, DestError> {
        let unreadable = || self.local("unreadable tar stream");
        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(data);
        for entry in archive.entries().map_err(unreadable())? {
            let mut entry = entry.map_err(unreadable())?;
            let name = entry.path().map_err(unreadable())?;
            let name = name.to_string_lossy().into_owned();
            let name = name.strip_prefix("./").unwrap_or(&name).to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(unreadable())?;
            files.insert(name, bytes);
        }
        Ok(files)
    }

    pub(super) fn read(&self, rels: &[String]) -> Result<BTreeMap<String, Vec<u8>>, DestError> {
        // tar frames the files and reads each through one open descriptor, so a file renamed
        // over while we read arrives whole (old or new), never mixed.
        let names: Vec<String> = rels.iter().map(|r| q(r)).collect();
        let script = format!(
            "set --\nfor f in {}; do [ -f \"$f\" ] && set -- \"$@\" \"$f\"; done\n\
             [ $# -eq 0 ] || exec tar -cf - \"$@\"",
            names.join(" ")
        );
        let out = self.run("reading", &script, Source::Bytes(b""))?;
        self.untar(&out)
    }

    /// One round trip for many entries: a tar of them is unpacked into this run's staging
    /// directory, every file is hash-checked (if we die mid-transfer, `tar` sees end-of-file
    /// early, and a truncated file must not replace an entry), then renamed in order.
    pub(super) fn write_batch(&self, files: &[(String, Vec<u8>)]) -> Result<(), DestError> {
        let mut archive = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        let (mut checks, mut moves) = (String::new(), String::new());
        for (i, (rel, bytes)) in files.iter().enumerate() {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive
                .append_data(&mut header, i.to_string(), &bytes[..])
                .map_err(self.local("cannot pack the entries"))?;
            if let Some(d) = Path::new(rel)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                dirs.insert(q(&d.to_string_lossy()));
            }
            let tmp = q(&format!("{}/{i}", self.session));
            checks.push_str(&format!(
                "check {tmp} {}\n",
                diskless_builder::store::sha256_hex(bytes)
            ));
            moves.push_str(&format!("mv -f {tmp} {} || exit 1\n", q(rel)));
        }
        let data = archive
            .into_inner()
            .map_err(self.local("cannot pack the entries"))?;
        let tmps: Vec<String> = (0..files.len())
            .map(|i| q(&format!("{}/{i}", self.session)))
            .collect();
        let mkdir = if dirs.is_empty() {
            String::new()
        } else {
            format!(
                "mkdir -p {} || exit 1\n",
                dirs.into_iter().collect::<Vec<_>>().join(" ")
            )
        };
        let script = format!(
            "{mkdir}tar -xmof - -C {session} || exit 1\n\
             check() {{ h=$(sha256sum < \"$1\") && [ \"${{h%% *}}\" = \"$2\" ] || \
             {{ echo \"incomplete transfer\" >&2; exit 3; }}; }}\n\
             {checks}chmod 644 {all} && sync {all} || exit 1\n{moves}",
            session = q(&self.session),
            all = tmps.join(" ")
        );
        let names: Vec<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
        self.run(
            &format!("writing {}", names.join(", ")),
            &script,
            Source::Bytes(&data),
        )?;
        Ok(())
    }

    /// All objects in one session: a tar streamed from the sources (never whole in memory) is
    /// unpacked into this run's staging directory; each file is hashed there and renamed into
    /// `objects/` only if it matches. A stream cut short fails `tar`, and nothing is renamed.
    pub(super) fn put_objects(&self, objects: &[(&str, Source)]) -> Result<(), DestError> {
        let mut script = format!(
            "tar -xmof - -C {} || exit 1\n\
             put() {{ h=$(sha256sum < \"$1\") || exit 1; h=${{h%% *}}; \
             if [ \"$h\" != \"$2\" ]; then echo \"objects/$2 arrived as $h\" >&2; exit 3; fi; \
             chmod 644 \"$1\" && sync \"$1\" && mv -f \"$1\" \"objects/$2\" || exit 1; }}\n",
            q(&self.session)
        );
        for (sha, _) in objects {
            script.push_str(&format!(
                "put {} {}\n",
                q(&format!("{}/{sha}", self.session)),
                q(sha)
            ));
        }
        let (reader, writer) = os_pipe::pipe().map_err(io("cannot create a pipe"))?;
        std::thread::scope(|scope| {
            let sender = scope.spawn(move || -> std::io::Result<()> {
                let mut archive = tar::Builder::new(std::io::BufWriter::new(writer));
                for (sha, src) in objects {
                    let mut header = tar::Header::new_ustar();
                    header.set_mode(0o644);
                    match src {
                        Source::File(p) => {
                            let f = std::fs::File::open(p)?;
                            header.set_size(f.metadata()?.len());
                            archive.append_data(&mut header, sha, f)?;
                        }
                        Source::Bytes(b) => {
                            header.set_size(b.len() as u64);
                            archive.append_data(&mut header, sha, *b)?;
                        }
                    }
                }
                archive.into_inner()?.flush()
            });
            let ran = self.run_with(
                &format!("copying {} object(s) (publish again)", objects.len()),
                &script,
                |e| e.stdin_file(reader),
            );
            let sent = sender.join().expect("tar sender panicked");
            ran?;
            sent.map_err(self.local("cannot send objects"))
        })
    }

    pub(super) fn remove(&self, rels: &[String]) -> Result<(), DestError> {
        let names: Vec<String> = rels.iter().map(|r| q(r)).collect();
        self.run(
            "removing",
            &format!("rm -f {}", names.join(" ")),
            Source::Bytes(b""),
        )?;
        Ok(())
    }

    /// `sha256sum` of the named objects on the server; names travel on standard input
    /// (NUL-separated, for `xargs -0`), so no command line grows with the store.
    pub(super) fn hash_objects(
        &self,
        names: &[&str],
    ) -> Result<BTreeMap<String, Result<String, String>>, DestError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let script = "cd objects 2>/dev/null || exit 0\nxargs -0 sha256sum -- 2>/dev/null\nexit 0";
        let stdin = names.join("\0").into_bytes();
        let out = self.run("hashing objects", script, Source::Bytes(&stdin))?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once("  "))
            .map(|(digest, name)| (name.to_string(), Ok(digest.to_string())))
            .collect())
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        // Ends the shared connection now instead of after ControlPersist.
        if !self.control.path().join("cm").exists() {
            return;
        }
        let n = self.argv.len();
        let mut args = self.argv[1..n - 1].to_vec();
        args.extend(["-O".into(), "exit".into(), self.argv[n - 1].clone()]);
        let _ = duct::cmd(&self.argv[0], args)
            .stdin_null()
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
}

/// The ssh child holding `flock` on the server; closing its stdin releases the lock.
pub struct SshLock {
    child: std::process::Child,
}

impl Drop for SshLock {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::Dest;

    #[test]
    fn ssh_urls() {
        let Dest::Ssh(s) = Dest::parse("ssh://admin@lab:2222/srv/tftp/").unwrap() else {
            panic!()
        };
        assert_eq!(s.root, "/srv/tftp");
        assert!(s
            .argv
            .ends_with(&["-p".into(), "2222".into(), "admin@lab".into()]));
        for bad in [
            "ssh://lab",
            "ssh:///srv",
            "ssh://lab:x/srv",
            "ssh://lab/",
            "ssh://@lab/x",
        ] {
            assert!(Dest::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(q("it's"), r"'it'\''s'");
    }
}
