//! The PID 1 of a diskless image (in progress).
fn main() {
    eprintln!("diskless-init: not implemented yet");
    std::process::exit(1);
}
