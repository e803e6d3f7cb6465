//! The lab network for real: inside a network namespace this test makes (never the host's
//! interfaces), a bridge with `diskless serve` on it (dnsmasq + nginx from the generated configs)
//! and QEMU machines on tap devices, no slirp. One BIOS machine (SeaBIOS, the NIC's iPXE ROM),
//! one UEFI machine (OVMF from Debian's `ovmf`, its own PXE: the NIC has no option ROM, so the
//! chain is UEFI PXE → TFTP ipxe.efi → HTTP), each booting its own inventory host entry to
//! containerd ready, and one machine whose MAC is in no host entry, which gets the default.
//! A fourth (BIOS) machine, on a second bridge, gets its address from a plain dnsmasq and its
//! boot answers from `diskless serve --proxy-dhcp` beside it.
//! Prints each machine's timeline and download rate (from its serial console; sgabios puts
//! the BIOS machine's iPXE on the serial line). Needs root (namespaces, taps); TCG only.
//!
//! The image has an SSH server (`--ssh`) and a registry mirror (`--registry-mirror`): the
//! inventory's key logs in on both known machines and runs `ctr version`, a wrong key (and
//! the unknown machine, which has no keys) is refused, the two host keys differ; and a CRI pod
//! on the BIOS machine runs an image that is not preloaded, pulled from a local registry
//! (Debian's `docker-registry`) on the bridge: the namespace has no other address to reach.

mod common;

use diskless_harness::machine::logged::Logged;
use diskless_harness::machine::netns::{self, Netns};
use diskless_harness::machine::qemu::{self, OVMF_CODE, OVMF_VARS};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");
const SERVER: &str = "10.33.0.1";
/// The proxy-DHCP network's boot server.
const PROXY_SERVER: &str = "10.34.0.1";
const PORT: &str = "8080";
/// The lab's registry, on the bridge beside the boot server, as Docker Hub's mirror.
const REGISTRY: &str = "10.33.0.1:5000";
const MIRROR_FLAG: &str = "docker.io=http://10.33.0.1:5000";
/// Not preloaded: only the mirror has it.
const MIRRORED_REF: &str = "docker.io/library/labnet-mirrored:1";

fn why_skip() -> Option<String> {
    if let Some(why) = netns::why_skip() {
        return Some(why);
    }
    for (file, pkg) in [
        (OVMF_CODE, "ovmf"),
        (OVMF_VARS, "ovmf"),
        ("/usr/sbin/dropbear", "dropbear-bin"),
        ("/usr/bin/docker-registry", "docker-registry"),
        ("/usr/bin/skopeo", "skopeo"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
        ("/usr/bin/curl", "curl"),
    ] {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (apt-get install {pkg})"));
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

/// The machine through the harness's one QEMU command line, run in the lab namespace. BIOS:
/// SeaBIOS boots the NIC's option ROM (iPXE, QEMU's only PXE ROM), sgabios copies the text
/// screen to the serial line. UEFI: no option ROM, OVMF's own virtio-net driver and PXE
/// client, as on a UEFI machine whose NIC firmware is not iPXE.
fn qemu(ns: &Netns, m: &Machine, vars: &Path) -> Command {
    let machine = qemu::Machine {
        firmware: match m.firmware {
            Firmware::Bios => qemu::Firmware::Bios { sga: true },
            Firmware::Uefi => qemu::Firmware::Uefi {
                vars: vars.to_owned(),
            },
        },
        ..qemu::Machine::new(
            512,
            m.mac,
            qemu::Nic::Tap {
                ifname: m.tap.to_string(),
            },
        )
    };
    let mut c = ns.cmd(qemu::QEMU);
    c.args(machine.args().expect("a tap machine's arguments"));
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

/// The lab's registry inside the namespace, on the bridge, holding [`MIRRORED_REF`] (made from
/// busybox with `diskless oci build`, pushed with skopeo); its log shows who pulled what.
fn start_registry(ns: &Netns, lab: &Path) -> Logged {
    let config = lab.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY}\n",
            lab.join("registry").display()
        ),
    )
    .unwrap();
    let registry = Logged::spawn(ns.cmd("docker-registry").arg("serve").arg(&config)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = ns
            .cmd("curl")
            .args(["-sf", "-o", "/dev/null"])
            .arg(format!("http://{REGISTRY}/v2/"))
            .status()
            .unwrap();
        if up.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not answer:\n{}",
            registry.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let root = lab.join("mirrored-root/bin");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy("/bin/busybox", root.join("busybox")).unwrap();
    let archive = lab.join("mirrored.tar");
    common::ok(
        Command::new(DISKLESS)
            .args(["oci", "build", "--from"])
            .arg(lab.join("mirrored-root"))
            .args(["--ref", MIRRORED_REF, "--layer", "gzip", "--out"])
            .arg(&archive),
    );
    let path = MIRRORED_REF.strip_prefix("docker.io/").unwrap();
    common::ok(
        ns.cmd("skopeo")
            .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{REGISTRY}/{path}")),
    );
    registry
}

/// The address a machine's last DHCP lease gave it (the booted Linux's, after firmware's and
/// iPXE's), from dnsmasq's log.
fn leased_address(serve_log: &str, mac: &str) -> String {
    serve_log
        .lines()
        .filter(|l| l.contains("DHCPACK(br0)") && l.contains(mac))
        .filter_map(|l| l.split("DHCPACK(br0) ").nth(1)?.split_whitespace().next())
        .next_back()
        .unwrap_or_else(|| panic!("no lease for {mac}:\n{serve_log}"))
        .to_string()
}

/// `ssh -i KEY root@ADDR COMMAND` from inside the namespace, known hosts kept in the lab
/// directory; retried while dropbear is not yet listening; at most 120 s.
fn ssh(ns: &Netns, lab: &Path, key: &str, addr: &str, command: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A bound on the whole session, not only the connection: a hung session fails here.
        let out = ns
            .cmd("timeout")
            .args(["120", "ssh"])
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ConnectTimeout=20",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                lab.join("known_hosts").display()
            ))
            .arg("-i")
            .arg(lab.join(key))
            .arg(format!("root@{addr}"))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let refused = String::from_utf8_lossy(&out.stderr).contains("Connection refused");
        if !refused || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A CRI pod (host network: this worker has no kubelet to hand containerd a pod range) whose
/// image is pulled through containerd's CRI plugin, as the kubelet would have it pulled: the
/// registry `config_path` and the mirror's `hosts.toml` decide where from.
const MIRRORED_POD: &str = r#"set -e
mkdir -p /run/labnet && cd /run/labnet
cat > pod.json <<'END'
{"metadata": {"name": "mirrored", "namespace": "default", "uid": "labnet-mirrored", "attempt": 0},
 "log_directory": "/run/labnet/logs",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
END
cat > container.json <<'END'
{"metadata": {"name": "mirrored"},
 "image": {"image": "docker.io/library/labnet-mirrored:1"},
 "command": ["/bin/busybox", "sh", "-c", "echo pulled through the mirror; sleep 3600"],
 "log_path": "mirrored.log"}
END
id=$(crictl --timeout 120s run --with-pull container.json pod.json)
for i in $(seq 60); do crictl logs "$id" 2>/dev/null | grep -q mirror && break; sleep 0.5; done
crictl logs "$id"
crictl images | grep labnet-mirrored
"#;

#[test]
fn bios_and_uefi_machines_boot_through_dnsmasq_and_nginx() {
    if let Some(why) = why_skip() {
        eprintln!("skipped: {why}");
        return;
    }
    let t_test = Instant::now();
    // The containerd-only reference worker (the smallest image the boot tests bring to
    // containerd ready), with its single padded initrd: what a UEFI machine's ipxe.efi needs
    // (see crates/builder/src/ipxe).
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("labnet-worker");
    let _ = std::fs::remove_dir_all(&out);
    common::ok(
        Command::new(DISKLESS)
            .args([
                "build",
                "--host",
                "--no-kubelet",
                "--single-initrd",
                "--ssh",
                "--registry-mirror",
                MIRROR_FLAG,
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
    for key in ["admin", "wrong"] {
        common::ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(lab.path().join(key)),
        );
    }
    let inventory = lab.path().join("lab.toml");
    std::fs::write(
        &inventory,
        "default_image = \"worker\"\nmenu_timeout = 3\nssh_authorized_keys_file = \"admin.pub\"\n\n\
         [[hosts]]\nmac = \"52:54:00:0b:10:01\"\nhostname = \"bios1\"\nimage = \"worker\"\n\n\
         [[hosts]]\nmac = \"52:54:00:0e:f1:01\"\nhostname = \"uefi1\"\nimage = \"worker\"\n\n\
         [[hosts]]\nmac = \"52:54:00:0b:10:02\"\nhostname = \"proxy1\"\nimage = \"worker\"\n",
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
    // A second lab network whose addresses come from its own DHCP server (a plain dnsmasq that
    // knows nothing of booting), with `serve --proxy-dhcp` beside it for the boot answers.
    let proxied = Machine {
        name: "proxy",
        firmware: Firmware::Bios,
        mac: "52:54:00:0b:10:02",
        tap: "tap3",
    };
    ns.ip("link add br1 address 02:00:00:34:00:01 type bridge")
        .unwrap();
    ns.ip(&format!("addr add {PROXY_SERVER}/24 dev br1"))
        .unwrap();
    ns.ip("addr add fd34::1/64 dev br1 nodad").unwrap();
    ns.ip("link set br1 up").unwrap();
    ns.ip(&format!("tuntap add {} mode tap", proxied.tap))
        .unwrap();
    ns.ip(&format!("link set {} master br1", proxied.tap))
        .unwrap();
    ns.ip(&format!("link set {} up", proxied.tap)).unwrap();
    let plain_dhcp = Logged::spawn(
        ns.cmd("dnsmasq")
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
            .args(["--interface=br1", "--bind-interfaces", "--log-facility=-"])
            .arg("--dhcp-range=10.34.0.100,10.34.0.150,255.255.255.0,1h")
            .arg(format!(
                "--dhcp-leasefile={}",
                lab.path().join("plain.leases").display()
            ))
            .arg(format!(
                "--pid-file={}",
                lab.path().join("plain.pid").display()
            )),
    )
    .unwrap();
    assert!(
        plain_dhcp
            .wait_for("DHCP, IP range", Duration::from_secs(10))
            .is_some(),
        "the plain DHCP server did not start:\n{}",
        plain_dhcp.text()
    );
    let proxy_serve = Logged::spawn(
        ns.cmd(DISKLESS)
            .arg("serve")
            .arg(&dest)
            .args(["--interface", "br1", "--proxy-dhcp"])
            .args(["--http-port", PORT, "--ipv6-ra"]),
    )
    .unwrap();
    assert!(
        proxy_serve
            .wait_for("diskless serve: ready", Duration::from_secs(15))
            .is_some(),
        "diskless serve --proxy-dhcp did not start:\n{}",
        proxy_serve.text()
    );

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
    assert_eq!(curl("boot.ipxe"), "200");
    assert_eq!(curl("generations/1.json"), "404");
    assert_eq!(curl("objects/"), "404");
    assert_eq!(curl("hosts/"), "404");

    let t_registry = Instant::now();
    let registry = start_registry(&ns, lab.path());
    eprintln!(
        "labnet: registry up and {MIRRORED_REF} pushed in {:.1} s",
        t_registry.elapsed().as_secs_f64()
    );

    let vars = lab.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let consoles: Vec<Logged> = machines
        .iter()
        .map(|m| Logged::spawn(&mut qemu(&ns, m, &vars)).unwrap())
        .collect();
    let proxy_console = Logged::spawn(&mut qemu(&ns, &proxied, &vars)).unwrap();
    let all = || {
        machines
            .iter()
            .chain([&proxied])
            .zip(consoles.iter().chain([&proxy_console]))
    };
    let ready = "diskless: containerd ok t=";
    let deadline = Duration::from_secs(300);
    let mut failures = Vec::new();
    for (m, c) in all() {
        let left = deadline.saturating_sub(c.start.elapsed());
        if c.wait_for(ready, left).is_none() {
            failures.push(m.name);
            eprintln!("--- {} console ---\n{}\n---", m.name, c.text());
        }
    }
    let boot_secs = t_test.elapsed().as_secs_f64();

    // Timelines, seconds since QEMU started, from each serial console.
    for (m, c) in all() {
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
    // Through proxy-DHCP: the address from the plain server, the boot answers from serve,
    // which leased nothing, and the machine's own entry over HTTP.
    let text = proxy_console.text();
    assert!(
        text.contains("hosts/52-54-00-0b-10-02.ipxe... ok"),
        "{text}"
    );
    assert!(text.contains("hostname=proxy1"), "{text}");
    assert!(
        plain_dhcp
            .text()
            .lines()
            .any(|l| l.contains("DHCPACK(br1)") && l.contains(proxied.mac)),
        "no lease from the plain DHCP server:\n{}",
        plain_dhcp.text()
    );
    let proxy_log = proxy_serve.text();
    assert!(
        proxy_log.lines().any(|l| l.contains(proxied.mac)) && !proxy_log.contains("DHCPACK"),
        "serve --proxy-dhcp did not answer (only) as a proxy:\n{proxy_log}"
    );
    drop(proxy_console);
    drop(proxy_serve);
    drop(plain_dhcp);

    // SSH: the inventory's key logs in on each known machine; a wrong key, and any key on the
    // unknown machine (no node segment, so no authorized_keys), is refused.
    let t_ssh = Instant::now();
    for (m, c) in machines.iter().zip(&consoles) {
        assert!(
            c.wait_for("diskless: sshd ok", Duration::from_secs(60))
                .is_some(),
            "{}: sshd did not start:\n{}",
            m.name,
            c.text()
        );
    }
    let addr = |m: &Machine| leased_address(&serve.text(), m.mac);
    for (m, c) in machines[..2].iter().zip(&consoles) {
        let out = ssh(&ns, lab.path(), "admin", &addr(m), "ctr version");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Server:") && stdout.contains("Version:"),
            "{}: ssh ctr version: {}\n{stdout}\n{}\n--- console ---\n{}",
            m.name,
            out.status,
            String::from_utf8_lossy(&out.stderr),
            c.text()
        );
    }
    for (m, key) in [(&machines[0], "wrong"), (&machines[2], "admin")] {
        let out = ssh(&ns, lab.path(), key, &addr(m), "ctr version");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Permission denied (publickey)"),
            "{} with key {key}: {}\n{err}",
            m.name,
            out.status
        );
    }
    // Each node made its own host key at boot.
    let known = std::fs::read_to_string(lab.path().join("known_hosts")).unwrap();
    let host_key = |m: &Machine| {
        let a = addr(m);
        known
            .lines()
            .find(|l| l.split_whitespace().next() == Some(a.as_str()) && l.contains("ssh-ed25519"))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_else(|| panic!("no ed25519 host key for {a} in known_hosts:\n{known}"))
            .to_string()
    };
    let keys: Vec<String> = machines.iter().map(host_key).collect();
    assert!(
        keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2],
        "host keys are shared between nodes: {keys:?}"
    );
    let ssh_secs = t_ssh.elapsed().as_secs_f64();

    // The registry mirror: an image no node has preloaded runs in a pod, pulled from the lab's
    // registry; the namespace has no route anywhere else.
    let t_pull = Instant::now();
    let out = ssh(&ns, lab.path(), "admin", &addr(&machines[0]), MIRRORED_POD);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pulled through the mirror"),
        "the mirrored pod: {}\n{stdout}\n{}\n--- registry ---\n{}\n--- console ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        registry.text(),
        consoles[0].text()
    );
    let pull_secs = t_pull.elapsed().as_secs_f64();
    // containerd asks the mirror for the tag (HEAD), then the manifest and blobs by digest,
    // each with `?ns=docker.io`: the registry it stands in for.
    let registry_log = registry.text();
    let path = MIRRORED_REF
        .strip_prefix("docker.io/")
        .and_then(|r| r.strip_suffix(":1"))
        .unwrap();
    let from_node = format!("{} - - ", addr(&machines[0]));
    for wanted in [
        format!("/v2/{path}/manifests/1?ns=docker.io HTTP/1.1\" 200"),
        format!("/v2/{path}/blobs/sha256:"),
    ] {
        assert!(
            registry_log.lines().any(|l| l.contains(&from_node)
                && l.contains(&wanted)
                && l.contains("?ns=docker.io")
                && l.contains("containerd/")),
            "the registry did not serve {wanted} to the node:\n{registry_log}"
        );
    }
    eprintln!(
        "labnet: ssh checks (2 logins, 2 refusals) {ssh_secs:.1} s; mirrored pod pulled and running {pull_secs:.1} s"
    );
    drop(registry);
    drop(consoles);

    // A second server on the same network: its port is taken, so it starts nothing.
    let serve_on = |port: &str| {
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
        c
    };
    // Bounded: a second server that started after all would otherwise run until killed.
    let second = |port: &str| {
        let c = serve_on(port);
        ns.cmd("timeout")
            .arg("30")
            // After nsenter's own `--net=…`: the diskless command line.
            .args(c.get_args().skip(1))
            .output()
            .unwrap()
    };
    let o = second(PORT);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("cannot listen on {SERVER}:{PORT}")),
        "{err}"
    );
    // Another HTTP port, but this interface already has our DHCP server: refused before
    // anything starts (dnsmasq would share port 67 and both would answer every client).
    let o = second("8081");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("a DHCP server on this machine already answers on br0"),
        "{err}"
    );
    let answered = ns
        .cmd("curl")
        .args(["-s", "-o", "/dev/null"])
        .arg(format!("http://{SERVER}:8081/boot.ipxe"))
        .status()
        .unwrap();
    assert!(!answered.success(), "an nginx was left on port 8081");

    // SIGTERM stops serve and both daemons.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = serve.child.wait().unwrap();
    assert!(status.success(), "serve: {status}\n{}", serve.text());
    assert!(serve.text().contains("signal 15: stopping"));

    // SIGKILL leaves nothing running either: dnsmasq drops root, which clears its parent-death
    // signal, so serve's watchdog stops it.
    let killed = Logged::spawn(&mut serve_on(PORT)).unwrap();
    assert!(
        killed
            .wait_for("diskless serve: ready", Duration::from_secs(15))
            .is_some(),
        "diskless serve did not start again:\n{}",
        killed.text()
    );
    // nsenter enters the namespace and execs serve: the child is serve itself, and its
    // children are the daemons and the watchdog.
    let serve_pid = killed.child.id();
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    };
    let daemons = children(serve_pid);
    let names = |pids: &[u32]| -> Vec<String> {
        pids.iter()
            .filter(|p| {
                // Gone, or dead and waiting to be reaped by whoever inherited it.
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|st| st.rsplit(')').next().is_some_and(|r| !r.starts_with(" Z")))
            })
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
            .map(|c| c.trim().to_string())
            .collect()
    };
    assert!(
        names(&daemons).iter().any(|n| n == "dnsmasq"),
        "no dnsmasq among serve's children {daemons:?}"
    );
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(serve_pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !names(&daemons).is_empty() {
        assert!(
            Instant::now() < deadline,
            "SIGKILLed serve left {:?} running",
            names(&daemons)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
