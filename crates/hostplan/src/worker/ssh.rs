//! The `ssh` step (the Nix module `ssh.nix`), with `--ssh`: dropbear, root, key login only; the
//! keys come in a node's own segment (`/root/.ssh/authorized_keys`).

use super::part::Part;
use crate::entries::{bin, dir, service};
use diskless_builder::plan::Component;

pub fn part() -> Part {
    Part {
        components: vec![Component {
            name: "ssh".into(),
            binaries: vec![bin("/usr/sbin/dropbear", None)],
            directories: vec![dir("/etc/dropbear", 0o700)],
            ..Default::default()
        }],
        // `-R` makes each host key at the first connection that asks for it, into
        // `/etc/dropbear` on the node's tmpfs root, so no key is ever in the image or shared
        // between nodes (`ssh.nix` runs it the same way); `-s` no passwords, `-F -E` in the
        // foreground with its log on stderr (the init's `[sshd]` lines).
        services: vec![service(
            "sshd",
            [
                "/usr/sbin/dropbear",
                "-F",
                "-E",
                "-R",
                "-s",
                "-P",
                "/run/dropbear.pid",
                "-p",
                "22",
            ],
        )],
        ..Default::default()
    }
}
