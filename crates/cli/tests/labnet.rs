//! The lab network for real: inside a network namespace this test makes (never the host's
//! interfaces), a bridge with `diskless serve` on it (dnsmasq + nginx from the generated configs)
//! and QEMU machines on tap devices, no slirp. One BIOS machine (SeaBIOS, the NIC's iPXE ROM),
//! one UEFI machine (OVMF from Debian's `ovmf`, its own PXE: the NIC has no option ROM, so the
//! chain is UEFI PXE → TFTP ipxe.efi → HTTP), each booting its own inventory host entry to
//! containerd ready, and one machine whose MAC is in no host entry, which gets the default.
//! Prints each machine's timeline and download rate (from its serial console; sgabios puts
//! the BIOS machine's iPXE on the serial line). Needs root (namespaces, taps); TCG only.

mod common;

use diskless_harness::logged::Logged;
use diskless_harness::netns::{self, Netns};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");
const SERVER: &str = "10.33.0.1";
const PORT: &str = "8080";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn why_skip() -> Option<String> {
    if let Some(why) = netns::why_skip() {
        return Some(why);
    }
    for file in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (apt-get install ovmf)"));
        }
    }
    None
}

#[derive(Clone, Copy, PartialEq)]
enum Firmware {
    Bios,
    Uefi,
}

struct Machine {
    name: &'static str,
    firmware: Firmware,
    mac: &'static str,
    tap: &'static str,
}

fn qemu(ns: &Netns, m: &Machine, vars: &Path) -> Command {
    let mut c = ns.cmd("qemu-system-x86_64");
    c.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-m",
        "512",
        "-smp",
        "1",
    ])
    .args([
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
    ])
    .args([
        "-netdev",
        &format!("tap,id=n0,ifname={},script=no,downscript=no", m.tap),
    ]);
    match m.firmware {
        // SeaBIOS boots the NIC's option ROM (iPXE, QEMU's only PXE ROM); sgabios copies the
        // text screen to the serial line.
        Firmware::Bios => c.args(["-device", "sga", "-boot", "n"]).args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={}", m.mac),
        ]),
        // No option ROM: OVMF's own virtio-net driver and PXE client, as on a UEFI machine
        // whose NIC firmware is not iPXE.
        Firmware::Uefi => c
            .args(["-machine", "q35"])
            .args([
                "-drive",
                &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            ])
            .args([
                "-drive",
                &format!("if=pflash,format=raw,file={}", vars.display()),
            ])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={},romfile=", m.mac),
            ]),
    };
    c
}

/// The sum of the object sizes a host entry names, read from DEST.
fn entry_bytes(dest: &Path, entry: &str) -> u64 {
    let text = std::fs::read_to_string(dest.join(entry)).unwrap();
    common::objects_of(&text)
        .iter()
        .map(|o| {
            std::fs::metadata(dest.join("objects").join(o))
                .unwrap()
                .len()
        })
        .sum()
}

#[test]
fn bios_and_uefi_machines_boot_through_dnsmasq_and_nginx() {
    if let Some(why) = why_skip() {
        eprintln!("skipped: {why}");
        return;
    }
    let t_test = Instant::now();
    // The containerd-only reference worker (the smallest image the boot tests bring to
    // containerd ready), with its single padded initrd: what a UEFI machine's ipxe.efi needs
    // (see crates/build/src/ipxe).
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("labnet-worker");
    let _ = std::fs::remove_dir_all(&out);
    common::ok(
        Command::new(DISKLESS)
            .args([
                "build",
                "--host",
                "--no-kubelet",
                "--single-initrd",
                "--out",
            ])
            .arg(&out)
            .env_remove("KUBELET"),
    );
    // nginx's workers run as nobody: the tree must be world-readable.
    let lab = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        lab.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let machines = [
        Machine {
            name: "bios",
            firmware: Firmware::Bios,
            mac: "52:54:00:0b:10:01",
            tap: "tap0",
        },
        Machine {
            name: "uefi",
            firmware: Firmware::Uefi,
            mac: "52:54:00:0e:f1:01",
            tap: "tap1",
        },
        Machine {
            name: "unknown",
            firmware: Firmware::Bios,
            mac: "52:54:00:99:99:99",
            tap: "tap2",
        },
    ];
    let inventory = lab.path().join("lab.toml");
    std::fs::write(
        &inventory,
        "default_image = \"worker\"\nmenu_timeout = 3\n\n\
         [[hosts]]\nmac = \"52:54:00:0b:10:01\"\nhostname = \"bios1\"\nimage = \"worker\"\n\n\
         [[hosts]]\nmac = \"52:54:00:0e:f1:01\"\nhostname = \"uefi1\"\nimage = \"worker\"\n",
    )
    .unwrap();
    let dest = lab.path().join("srv");
    common::ok(
        Command::new(DISKLESS)
            .arg("publish")
            .arg(&out)
            .arg("--to")
            .arg(&dest)
            .arg("--inventory")
            .arg(&inventory),
    );

    let ns = Netns::new().unwrap();
    let taps: Vec<&str> = machines.iter().map(|m| m.tap).collect();
    ns.bridge(SERVER, "fd33::1", &taps).unwrap();

    let mut serve_cmd = ns.cmd(DISKLESS);
    serve_cmd
        .arg("serve")
        .arg(&dest)
        .args([
            "--interface",
            "br0",
            "--dhcp-range",
            "10.33.0.100-10.33.0.199",
        ])
        .args(["--http-port", PORT, "--ipv6-ra"]);
    let mut serve = Logged::spawn(&mut serve_cmd).unwrap();
    assert!(
        serve
            .wait_for("diskless serve: ready", Duration::from_secs(15))
            .is_some(),
        "diskless serve did not start:\n{}",
        serve.text()
    );
    // The generated nginx serves published paths only.
    let curl = |path: &str| {
        let mut c = ns.cmd("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{SERVER}:{PORT}/{path}"));
        common::ok(&mut c)
    };
    if Path::new("/usr/bin/curl").is_file() {
        assert_eq!(curl("boot.ipxe"), "200");
        assert_eq!(curl("generations/1.json"), "404");
        assert_eq!(curl("objects/"), "404");
        assert_eq!(curl("hosts/"), "404");
    } else {
        println!(
            "skipped: curl not installed (apt-get install curl): what nginx serves is not asked"
        );
    }

    let vars = lab.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let consoles: Vec<Logged> = machines
        .iter()
        .map(|m| Logged::spawn(&mut qemu(&ns, m, &vars)).unwrap())
        .collect();
    let ready = "diskless: containerd ok t=";
    let deadline = Duration::from_secs(300);
    let mut failures = Vec::new();
    for (m, c) in machines.iter().zip(&consoles) {
        let left = deadline.saturating_sub(c.start.elapsed());
        if c.wait_for(ready, left).is_none() {
            failures.push(m.name);
            eprintln!("--- {} console ---\n{}\n---", m.name, c.text());
        }
    }
    let boot_secs = t_test.elapsed().as_secs_f64();

    // Timelines, seconds since QEMU started, from each serial console.
    for (m, c) in machines.iter().zip(&consoles) {
        let entry = match m.name {
            "unknown" => "worker.ipxe".to_string(),
            _ => format!("hosts/{}.ipxe", m.mac.replace(':', "-")),
        };
        let bytes = entry_bytes(&dest, &entry);
        let fw_pxe = c.when(">>Start PXE over IPv4").or(c.when("iPXE (PCI"));
        let nbp = c.when("NBP file downloaded successfully");
        let ipxe = c.when("iPXE initialising devices");
        let script = c.when("boot.ipxe : ");
        let first_obj = c.when("objects/");
        let lines = c.lines.lock().unwrap().clone();
        let last_obj = lines
            .iter()
            .filter(|(_, l)| l.contains("objects/") && l.ends_with("ok"))
            .map(|(t, _)| *t)
            .next_back();
        let kernel = c.when("Linux version");
        let containerd = c.when(ready);
        let rate = match (first_obj, last_obj) {
            (Some(a), Some(b)) if b > a => format!("{:.1} MB/s", bytes as f64 / 1e6 / (b - a)),
            _ => "?".into(),
        };
        let f = |t: Option<f64>| t.map(|t| format!("{t:.1}")).unwrap_or("-".into());
        eprintln!(
            "labnet {}: firmware PXE {} | iPXE binary (TFTP) {} | iPXE {} | boot.ipxe {} | objects {}..{} ({} bytes, {rate}) | kernel {} | containerd ready {}",
            m.name,
            f(fw_pxe),
            f(nbp),
            f(ipxe),
            f(script),
            f(first_obj),
            f(last_obj),
            bytes,
            f(kernel),
            f(containerd),
        );
    }
    eprintln!("labnet: built, published, booted in {boot_secs:.1} s");
    assert!(failures.is_empty(), "not containerd ready: {failures:?}");

    // Each known machine booted its own entry (hostname from its node segment), the unknown
    // one the default image; the server logs show the route each took.
    let serve_log = serve.text();
    for (m, c) in machines.iter().zip(&consoles) {
        let text = c.text();
        match m.name {
            "unknown" => {
                assert!(
                    text.contains("hosts/52-54-00-99-99-99.ipxe... No such file"),
                    "{text}"
                );
                assert!(text.contains("worker.ipxe... ok"), "{text}");
            }
            _ => assert!(
                text.contains(&format!("hosts/{}.ipxe... ok", m.mac.replace(':', "-"))),
                "{text}"
            ),
        }
        assert!(
            serve_log
                .lines()
                .any(|l| l.contains("DHCPACK(br0)") && l.contains(m.mac)),
            "no lease for {}:\n{serve_log}",
            m.mac
        );
    }
    for (m, host) in [(&machines[0], "bios1"), (&machines[1], "uefi1")] {
        let idx = machines.iter().position(|x| x.mac == m.mac).unwrap();
        let text = consoles[idx].text();
        assert!(
            text.contains(&format!("hostname={host}")),
            "{}: {text}",
            m.name
        );
    }
    assert!(
        serve_log.contains("sent /usr/lib/ipxe/ipxe.efi to"),
        "the UEFI machine did not fetch ipxe.efi by TFTP:\n{serve_log}"
    );
    drop(consoles);

    // A second server on the same network: its port is taken, so it starts nothing.
    let second = |port: &str| {
        let mut c = ns.cmd(DISKLESS);
        c.arg("serve")
            .arg(&dest)
            .args([
                "--interface",
                "br0",
                "--dhcp-range",
                "10.33.0.100-10.33.0.199",
            ])
            .args(["--http-port", port]);
        c.output().unwrap()
    };
    let o = second(PORT);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("cannot listen on {SERVER}:{PORT}")),
        "{err}"
    );

    // SIGTERM stops serve and both daemons.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = serve.child.wait().unwrap();
    assert!(status.success(), "serve: {status}\n{}", serve.text());
    assert!(serve.text().contains("signal 15: stopping"));
}
