//! The generated configs, line by line, and accepted by the real daemons (`dnsmasq --test`,
//! `nginx -t`, which also binds the listen address: 127.0.0.1 here).

use diskless_serve::{print_config, resolve, ServeOptions};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

fn published(dir: &Path) -> std::path::PathBuf {
    let dest = dir.join("dest");
    std::fs::create_dir_all(dest.join("objects")).unwrap();
    std::fs::write(dest.join("boot.ipxe"), "#!ipxe\n").unwrap();
    dest
}

fn options(dest: &Path) -> ServeOptions {
    ServeOptions {
        dest: dest.to_owned(),
        interface: "lo".into(),
        address: Some("127.0.0.1/8".into()),
        dhcp_range: Some((Ipv4Addr::new(127, 0, 0, 100), Ipv4Addr::new(127, 0, 0, 199))),
        proxy: false,
        listen: None,
        http_port: 8080,
        tftp_root: None,
        state_dir: None,
        ipv6_ra: false,
    }
}

fn have(bin: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(bin).is_file())
}

fn has_ipxe() -> bool {
    Path::new("/usr/lib/ipxe/undionly.kpxe").is_file()
}

#[test]
fn full_dhcp_config_lines() {
    if !has_ipxe() {
        eprintln!("skipped: /usr/lib/ipxe/undionly.kpxe missing (apt-get install ipxe)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = published(dir.path());
    let r = resolve(&options(&dest), Path::new("/run/x")).unwrap();
    let text = r.dnsmasq.render();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "port=0",
            "interface=lo",
            "bind-interfaces",
            "log-facility=-",
            "dhcp-range=127.0.0.100,127.0.0.199,255.0.0.0,1h",
            "dhcp-leasefile=/run/x/dnsmasq.leases",
            "enable-tftp",
            "tftp-root=/usr/lib/ipxe",
            "dhcp-match=set:efi64,option:client-arch,7",
            "dhcp-match=set:efi64,option:client-arch,9",
            "dhcp-userclass=set:ipxe,iPXE",
            "dhcp-boot=tag:ipxe,http://127.0.0.1:8080/boot.ipxe",
            "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
            "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
        ]
    );
    let nginx = r.nginx.render();
    for want in [
        "listen 127.0.0.1:8080;",
        &format!("root {};", dest.canonicalize().unwrap().display()),
        "autoindex off;",
        "location ~ \"^/objects/[0-9a-f]{64}$\" {",
        "add_header Cache-Control \"public, max-age=31536000, immutable\";",
        "location = /boot.ipxe {",
        "add_header Cache-Control no-cache;",
        "location / {\n            return 404;",
    ] {
        assert!(nginx.contains(want), "{want:?} not in\n{nginx}");
    }
}

#[test]
fn proxy_mode_offers_boot_services_only() {
    if !has_ipxe() {
        eprintln!("skipped: apt-get install ipxe");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = published(dir.path());
    let mut o = options(&dest);
    o.dhcp_range = None;
    o.proxy = true;
    let text = resolve(&o, Path::new("/run/x")).unwrap().dnsmasq.render();
    assert!(
        text.contains("\ndhcp-range=127.0.0.0,proxy,255.0.0.0\n"),
        "{text}"
    );
    assert!(text.contains("\npxe-service=tag:!ipxe,x86PC,diskless,undionly.kpxe\n"));
    assert!(text.contains("\npxe-service=tag:!ipxe,x86-64_EFI,diskless,ipxe.efi\n"));
    // iPXE itself is answered by the proxy too: the script's URL as its boot service.
    for csa in ["x86PC", "BC_EFI", "x86-64_EFI"] {
        let line =
            format!("\npxe-service=tag:ipxe,{csa},diskless,http://127.0.0.1:8080/boot.ipxe\n");
        assert!(text.contains(&line), "{text}");
    }
    assert!(!text.contains("tag:!efi64"), "{text}");
}

#[test]
fn router_advertisements_only_when_asked() {
    if !has_ipxe() {
        eprintln!("skipped: apt-get install ipxe");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = published(dir.path());
    let mut o = options(&dest);
    let text = resolve(&o, Path::new("/run/x")).unwrap().dnsmasq.render();
    assert!(!text.contains("enable-ra"), "{text}");
    o.ipv6_ra = true;
    let text = resolve(&o, Path::new("/run/x")).unwrap().dnsmasq.render();
    assert!(
        text.contains("\nenable-ra\ndhcp-range=::,constructor:lo,ra-only\n"),
        "{text}"
    );
}

#[test]
fn bad_input_is_refused_with_what_to_fix() {
    if !has_ipxe() {
        eprintln!("skipped: apt-get install ipxe");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = published(dir.path());
    let err = |o: ServeOptions| format!("{:#}", resolve(&o, Path::new("/run/x")).unwrap_err());

    let mut o = options(&dest);
    o.dest = dir.path().to_owned();
    assert!(err(o.clone()).contains("has no boot.ipxe"));
    // --print-config with bad input creates nothing.
    let confs = dir.path().join("confs");
    assert!(print_config(&o, &confs).is_err());
    assert!(!confs.exists());

    let mut o = options(&dest);
    o.address = Some("10.33.0.1/24".into());
    o.dhcp_range = Some((Ipv4Addr::new(10, 34, 0, 10), Ipv4Addr::new(10, 34, 0, 20)));
    let e = err(o);
    assert!(
        e.contains("10.34.0.10 is not a host address of lo's network 10.33.0.0/24"),
        "{e}"
    );

    let mut o = options(&dest);
    o.dhcp_range = Some((Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 9)));
    assert!(err(o).contains("own address"));

    let mut o = options(&dest);
    o.interface = "br0\ndhcp-range=0.0.0.0".into();
    assert!(err(o).contains("interface name"));

    let mut o = options(&dest);
    o.tftp_root = Some(dir.path().to_owned());
    assert!(err(o).contains("apt-get install ipxe"));

    let mut o = options(&dest);
    o.dhcp_range = None;
    assert!(err(o).contains("--proxy-dhcp"));

    let spaced = dir.path().join("my dest");
    std::fs::create_dir_all(&spaced).unwrap();
    std::fs::write(spaced.join("boot.ipxe"), "#!ipxe\n").unwrap();
    let mut o = options(&dest);
    o.dest = spaced;
    assert!(err(o).contains("not usable in a daemon config"));
}

#[test]
fn the_daemons_accept_the_configs() {
    if !has_ipxe() || !have("dnsmasq") || !have("nginx") {
        eprintln!(
            "skipped: needs dnsmasq, nginx and ipxe (apt-get install dnsmasq-base nginx ipxe)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = published(dir.path());
    for proxy in [false, true] {
        let mut o = options(&dest);
        o.ipv6_ra = !proxy;
        if proxy {
            o.dhcp_range = None;
            o.proxy = true;
        }
        // A port nobody holds: nginx -t binds it.
        o.http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let confs = dir.path().join(format!("conf-{proxy}"));
        let files = print_config(&o, &confs).unwrap();
        let out = Command::new("dnsmasq")
            .arg("--test")
            .arg("-C")
            .arg(&files[0])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("nginx")
            .args(["-e", "stderr", "-t", "-p"])
            .arg(confs.join("state"))
            .arg("-c")
            .arg(&files[1])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.contains("test is successful"),
            "{err}"
        );
    }
}
