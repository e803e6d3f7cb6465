//! `/etc/machine-id`: unique per node and per boot, so the image must not carry one (kubelet,
//! journald and DHCP client ids read it). 128 random bits as 32 lowercase hex digits.

pub fn ensure() -> Result<(), crate::sys::SysError> {
    const PATH: &str = "/etc/machine-id";
    if std::path::Path::new(PATH).exists() {
        return Ok(());
    }
    let mut id = [0u8; 16];
    crate::sys::random_bytes(&mut id)?;
    // Version-4 UUID bits, as systemd does, so tools parsing it as a UUID are content.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let text: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::create_dir_all("/etc");
    std::fs::write(PATH, format!("{text}\n")).map_err(crate::sys::io("write", PATH))
}
