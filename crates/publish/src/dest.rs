//! Where `publish`, `rollback`, `gc` and `verify --to` work: a local directory or
//! `ssh://[user@]host[:port]/abs/path`. Publish needs only a handful of operations (snapshot,
//! read a batch, write entries atomically, put objects, remove, hash every object, lock); each
//! is implemented twice here so `publish.rs` keeps its ordering (the crash-safety argument) in
//! one place whatever the transport.
//!
//! Over ssh every operation is one remote `sh` script run through one shared connection
//! (ControlMaster). A session still costs 0.15–1 s on a loaded machine, so operations are
//! batched: a publish that changes nothing makes two (lock, snapshot).
//! The server needs `sh`, coreutils (`stat`, `sha256sum`, `sync`, `mv`), `flock` (util-linux)
//! and `tar` (batched reads and writes). Temporary files live in `DEST/.staging/`, which every
//! locked run empties first, so an interrupted copy never leaves a stray name in `objects/`.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Subdirectories whose files publish reads or writes; the listing covers these and DEST itself.
const DIRS: [&str; 3] = ["hosts", "objects", "generations"];

pub enum Dest {
    Local(PathBuf),
    Ssh(Ssh),
}

/// Bytes for a new object: a file of the build output, or made in memory (node segments).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// DEST as one run sees it: every file with its size, and the contents of the small files
/// every command reads (generation records and entries), fetched in one round trip.
pub struct Snapshot {
    /// By path relative to DEST: the top level, `hosts/`, `objects/`, `generations/`.
    pub files: BTreeMap<String, u64>,
    /// `generations/*.json`, `*.ipxe`, `hosts/*.ipxe`.
    pub texts: BTreeMap<String, Vec<u8>>,
}

/// Whether publish reads `rel` with the snapshot.
fn is_text(rel: &str) -> bool {
    match rel.split_once('/') {
        None => rel.ends_with(".ipxe"),
        Some(("hosts", name)) => name.ends_with(".ipxe") && !name.contains('/'),
        Some(("generations", name)) => name.ends_with(".json") && !name.contains('/'),
        _ => false,
    }
}

/// One object's digest as `verify --to` sees it.
pub struct ObjectHash {
    pub name: String,
    pub size: u64,
    /// sha256 of the content, or why it could not be read.
    pub digest: Result<String, String>,
}

impl Dest {
    /// Parses `--to`; for ssh nothing is contacted yet (the first operation connects).
    pub fn parse(to: &str) -> anyhow::Result<Dest> {
        match to.strip_prefix("ssh://") {
            Some(rest) => Ok(Dest::Ssh(Ssh::parse(to, rest)?)),
            None => Ok(Dest::Local(PathBuf::from(to))),
        }
    }

    /// For messages and reports: the path or URL as the user gave it.
    pub fn name(&self) -> String {
        match self {
            Dest::Local(p) => p.display().to_string(),
            Dest::Ssh(s) => s.url.clone(),
        }
    }

    /// Takes the exclusive lock on DEST, first creating DEST (publish) or requiring it. Also
    /// empties `.staging/`: whatever is there was left by a run that died.
    pub fn lock(&self, create: bool) -> anyhow::Result<DestLock> {
        match self {
            Dest::Local(root) => {
                if create {
                    std::fs::create_dir_all(root.join("objects")).with_context(|| {
                        format!("cannot create boot server directory {}", root.display())
                    })?;
                }
                let lock = LocalLock::take(root)?;
                let staging = root.join(".staging");
                match std::fs::remove_dir_all(&staging) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => bail!("cannot clean {}: {e}", staging.display()),
                }
                std::fs::create_dir_all(&staging)
                    .with_context(|| format!("cannot write to {}", root.display()))?;
                Ok(DestLock::Local(lock))
            }
            Dest::Ssh(s) => s.lock(create).map(DestLock::Ssh),
        }
    }

    /// Every regular file at the top of DEST and in `hosts/`, `objects/`, `generations/`, with
    /// its size, by path relative to DEST. A missing DEST lists empty locally; over ssh it is an
    /// error (it is the first thing `verify` does, and "cannot cd" is the clearer message).
    fn list(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        match self {
            Dest::Local(root) => {
                let mut files = BTreeMap::new();
                for dir in std::iter::once("").chain(DIRS) {
                    let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
                        continue;
                    };
                    for e in rd {
                        let e = e.with_context(|| format!("cannot list {}", root.display()))?;
                        let meta = e.metadata()?;
                        if meta.is_file() {
                            let name = e.file_name().to_string_lossy().into_owned();
                            files.insert(join(dir, &name), meta.len());
                        }
                    }
                }
                Ok(files)
            }
            Dest::Ssh(s) => Ok(s.snapshot()?.files),
        }
    }

    /// Lists DEST and reads its generation records and entries (one round trip over ssh).
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        match self {
            Dest::Local(_) => {
                let files = self.list()?;
                let texts: Vec<String> = files.keys().filter(|f| is_text(f)).cloned().collect();
                let texts = self.read(&texts)?;
                Ok(Snapshot { files, texts })
            }
            Dest::Ssh(s) => s.snapshot(),
        }
    }

    /// Reads the files among `rels` that exist, in one round trip over ssh.
    pub fn read(&self, rels: &[String]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        match self {
            Dest::Local(root) => {
                let mut out = BTreeMap::new();
                for rel in rels {
                    match std::fs::read(root.join(rel)) {
                        Ok(bytes) => {
                            out.insert(rel.clone(), bytes);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => bail!("cannot read {}: {e}", root.join(rel).display()),
                    }
                }
                Ok(out)
            }
            Dest::Ssh(_) if rels.is_empty() => Ok(BTreeMap::new()),
            Dest::Ssh(s) => s.read(rels),
        }
    }

    /// Replaces `rel` atomically (temp in `.staging/`, fsync, rename). Call under the lock.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.write_batch(&[(rel.to_string(), bytes.to_vec())])
    }

    /// Replaces each file atomically, in order (one round trip over ssh).
    pub fn write_batch(&self, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        match self {
            Dest::Local(root) => {
                for (rel, bytes) in files {
                    let target = root.join(rel);
                    if let Some(dir) = target.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                    }
                    write_local(root, &target, bytes)
                        .with_context(|| format!("cannot write {}", target.display()))?;
                }
                Ok(())
            }
            Dest::Ssh(_) if files.is_empty() => Ok(()),
            Dest::Ssh(s) => s.write_batch(files),
        }
    }

    /// Stores each `objects/<sha>` from its source: the source is hashed first, the copy is
    /// hashed again where it landed (on the server, over ssh: all in one session) before it is
    /// renamed into place. Returns the bytes copied.
    pub fn put_objects(&self, objects: &[(&str, Source)]) -> anyhow::Result<u64> {
        let mut total = 0;
        for (sha, src) in objects {
            let (digest, size) = match src {
                Source::File(p) => diskless_build::store::hash_file(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                Source::Bytes(b) => (diskless_build::store::sha256_hex(b), b.len() as u64),
            };
            if digest != *sha {
                let what = match src {
                    Source::File(p) => p.display().to_string(),
                    Source::Bytes(_) => "a generated object".into(),
                };
                bail!("{what} does not hash to its name: the build output is damaged; rebuild it");
            }
            total += size;
        }
        match self {
            Dest::Local(root) => {
                for (sha, src) in objects {
                    put_local(root, sha, *src)?;
                }
            }
            Dest::Ssh(_) if objects.is_empty() => {}
            Dest::Ssh(s) => s.put_objects(objects)?,
        }
        Ok(total)
    }

    /// Removes files (missing ones are not an error), in the order given.
    pub fn remove(&self, rels: &[String]) -> anyhow::Result<()> {
        match self {
            Dest::Local(root) => {
                for rel in rels {
                    match std::fs::remove_file(root.join(rel)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => bail!("cannot remove {}: {e}", root.join(rel).display()),
                    }
                }
                Ok(())
            }
            Dest::Ssh(_) if rels.is_empty() => Ok(()),
            Dest::Ssh(s) => s.remove(rels),
        }
    }

    /// Hashes every file in `objects/` (over ssh with `sha256sum` on the server: only digests
    /// cross the network).
    pub fn hash_objects(&self, listing: &BTreeMap<String, u64>) -> anyhow::Result<Vec<ObjectHash>> {
        let objects: Vec<(&str, u64)> = listing
            .iter()
            .filter_map(|(rel, size)| Some((rel.strip_prefix("objects/")?, *size)))
            .collect();
        let digests: BTreeMap<String, Result<String, String>> = match self {
            Dest::Local(root) => objects
                .iter()
                .map(|(name, _)| {
                    let d = diskless_build::store::hash_file(&root.join("objects").join(name))
                        .map(|(d, _)| d)
                        .map_err(|e| e.to_string());
                    (name.to_string(), d)
                })
                .collect(),
            Dest::Ssh(s) => s.hash_objects()?,
        };
        Ok(objects
            .into_iter()
            .map(|(name, size)| ObjectHash {
                name: name.to_string(),
                size,
                digest: digests
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| Err("cannot read it".into())),
            })
            .collect())
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn put_local(root: &Path, sha: &str, src: Source) -> anyhow::Result<()> {
    let target = root.join(diskless_build::index::object_path(sha));
    let bytes = match src {
        Source::File(p) => {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        Source::Bytes(b) => b.to_vec(),
    };
    write_local(root, &target, &bytes)
        .with_context(|| format!("cannot write {}", target.display()))?;
    let (copied, _) = diskless_build::store::hash_file(&target)?;
    if copied != sha {
        let _ = std::fs::remove_file(&target);
        bail!(
            "{} changed while being copied; publish again",
            target.display()
        );
    }
    Ok(())
}

/// `store::write_atomic`, but with the temporary file in `DEST/.staging/` so a write killed
/// half-way leaves nothing beside the real names.
fn write_local(root: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(root.join(".staging"))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Served by TFTP/HTTP: world-readable whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

/// Held for the whole run; dropping it releases the lock.
#[allow(dead_code)] // never read: it exists for its Drop
pub enum DestLock {
    Local(LocalLock),
    Ssh(SshLock),
}

/// `flock` on `DEST/.lock`, released when dropped (or when the process dies).
pub struct LocalLock(std::fs::File);

impl LocalLock {
    fn take(dest: &Path) -> anyhow::Result<LocalLock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dest.join(".lock"))
            .with_context(|| format!("cannot write to {}: is it writable?", dest.display()))?;
        // SAFETY: flock on a file descriptor we own; blocks until other publishers finish.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            bail!(
                "cannot lock {}: {}",
                dest.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(LocalLock(f))
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor; closing it would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// An `ssh://` destination and the private ControlMaster socket all its commands share.
pub struct Ssh {
    url: String,
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
    fn parse(url: &str, rest: &str) -> anyhow::Result<Ssh> {
        let usage = "expected ssh://[user@]host[:port]/absolute/path";
        let slash = rest
            .find('/')
            .with_context(|| format!("--to {url}: no path on the server; {usage}"))?;
        let (authority, root) = rest.split_at(slash);
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .with_context(|| format!("--to {url}: unclosed '[' in the host; {usage}"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || user.is_some_and(str::is_empty) {
            bail!("--to {url}: no host; {usage}");
        }
        if let Some(p) = port {
            if p.parse::<u16>().is_err() {
                bail!("--to {url}: port {p:?} is not a number; {usage}");
            }
        }
        if root.len() < 2 {
            bail!("--to {url}: refusing the server's root directory; {usage}");
        }
        // `DISKLESS_SSH` like GIT_SSH_COMMAND: ssh reads its config from the real home
        // directory, not $HOME, so tests and unusual setups need another way in.
        let command = std::env::var("DISKLESS_SSH").unwrap_or_else(|_| "ssh".into());
        let mut argv: Vec<String> = command.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            bail!("DISKLESS_SSH is set but empty: unset it or give an ssh command");
        }
        let control = tempfile::Builder::new()
            .prefix("diskless-ssh-")
            .tempdir()
            .context("cannot create a directory for the ssh control socket")?;
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
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut nonce)?;
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
    fn run(&self, what: &str, script: &str, stdin: Source) -> anyhow::Result<Vec<u8>> {
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
    ) -> anyhow::Result<Vec<u8>> {
        let script = format!("cd {} || exit 1\n{script}", q(&self.root));
        let out = stdin(self.command(&script))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("{}: cannot run {:?}", self.url, self.argv[0]))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(self.failure(what, out.status.code(), &out.stderr))
    }

    fn failure(&self, what: &str, code: Option<i32>, stderr: &[u8]) -> anyhow::Error {
        let stderr = String::from_utf8_lossy(stderr);
        let stderr = stderr.trim();
        if code == Some(255) {
            anyhow::anyhow!(
                "cannot reach {} over ssh: {stderr} (check the host, port, user and key; \
                 DISKLESS_SSH overrides the ssh command)",
                self.url
            )
        } else {
            anyhow::anyhow!("{}: {what} failed: {stderr}", self.url)
        }
    }

    fn lock(&self, create: bool) -> anyhow::Result<SshLock> {
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
            .with_context(|| format!("{}: cannot run {:?}", self.url, self.argv[0]))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "locked" {
            drop(child.stdin.take());
            let out = child.wait_with_output()?;
            return Err(self.failure("taking the lock", out.status.code(), &out.stderr));
        }
        Ok(SshLock { child })
    }

    fn snapshot(&self) -> anyhow::Result<Snapshot> {
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
            .with_context(|| format!("{}: garbled listing", self.url))?;
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

    fn untar(&self, data: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(data);
        for entry in archive
            .entries()
            .with_context(|| format!("{}: unreadable tar stream", self.url))?
        {
            let mut entry =
                entry.with_context(|| format!("{}: unreadable tar stream", self.url))?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let name = name.strip_prefix("./").unwrap_or(&name).to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes)?;
            files.insert(name, bytes);
        }
        Ok(files)
    }

    fn read(&self, rels: &[String]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
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
    fn write_batch(&self, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        let mut archive = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        let (mut checks, mut moves) = (String::new(), String::new());
        for (i, (rel, bytes)) in files.iter().enumerate() {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive.append_data(&mut header, i.to_string(), &bytes[..])?;
            if let Some(d) = Path::new(rel)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                dirs.insert(q(&d.to_string_lossy()));
            }
            let tmp = q(&format!("{}/{i}", self.session));
            checks.push_str(&format!(
                "check {tmp} {}\n",
                diskless_build::store::sha256_hex(bytes)
            ));
            moves.push_str(&format!("mv -f {tmp} {} || exit 1\n", q(rel)));
        }
        let data = archive.into_inner()?;
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
    fn put_objects(&self, objects: &[(&str, Source)]) -> anyhow::Result<()> {
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
        let (reader, writer) = os_pipe::pipe().context("cannot create a pipe")?;
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
            sent.with_context(|| format!("{}: cannot send objects", self.url))
        })
    }

    fn remove(&self, rels: &[String]) -> anyhow::Result<()> {
        let names: Vec<String> = rels.iter().map(|r| q(r)).collect();
        self.run(
            "removing",
            &format!("rm -f {}", names.join(" ")),
            Source::Bytes(b""),
        )?;
        Ok(())
    }

    fn hash_objects(&self) -> anyhow::Result<BTreeMap<String, Result<String, String>>> {
        let script = "cd objects 2>/dev/null || exit 0\nsha256sum -- * 2>/dev/null\nexit 0";
        let out = self.run("hashing objects", script, Source::Bytes(b""))?;
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
