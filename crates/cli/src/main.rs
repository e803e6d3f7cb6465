//! The `diskless` command line: parses arguments, calls the library, maps errors to exit codes
//! (`exit.rs`: 0 success, 1 bad input, 2 usage, 3 a failed check, 4 an environment problem).

mod args;
mod cache;
mod exit;
mod oci;

use args::{BootArgs, BuildArgs, CheckArgs, HostArgs, InspectArgs, PublishArgs, ServeArgs};
use clap::{Parser, Subcommand};
use diskless_builder::{inspect, pipeline, plan::Plan, verify};
use diskless_hostplan::host;
use diskless_publish as publish;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "diskless",
    version,
    about,
    propagate_version = true,
    after_help = exit::CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a build plan (JSON) for the reference worker made from this machine's packages.
    Plan {
        /// Resolve the plan from the host's own (Debian) packages.
        #[arg(long, required = true)]
        host: bool,
        #[command(flatten)]
        host_args: HostArgs,
        /// Write the plan here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Build an image: kernel, content-addressed initramfs segments, index and iPXE entry.
    Build {
        /// The build plan to read.
        #[arg(long, conflicts_with = "host", required_unless_present = "host")]
        plan: Option<PathBuf>,
        /// Build the plan `diskless plan --host` prints.
        #[arg(long)]
        host: bool,
        #[command(flatten)]
        host_args: HostArgs,
        #[command(flatten)]
        options: BuildArgs,
        /// Print the build report as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Show what an image contains: segments and files, largest first.
    Inspect {
        /// Output directory of `diskless build`.
        out: PathBuf,
        #[command(flatten)]
        args: InspectArgs,
        #[arg(long)]
        json: bool,
    },
    /// Check that every stored artifact hashes to its name and every entry points at one.
    Verify {
        /// Output directory of `diskless build`.
        #[arg(required_unless_present = "to", conflicts_with = "to")]
        out: Option<PathBuf>,
        /// Verify a boot server instead (a directory or ssh://[user@]host[:port]/path; also
        /// checks that no secret is in a shared entry).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Publish built images to a boot server directory, with host entries from an inventory.
    Publish {
        #[command(flatten)]
        args: PublishArgs,
        #[arg(long)]
        json: bool,
    },
    /// Restore the previous version of an image on a boot server.
    Rollback {
        /// The boot server: a directory or ssh://[user@]host[:port]/path.
        #[arg(long)]
        to: String,
        /// Image name.
        image: String,
    },
    /// Delete objects that no kept generation references.
    Gc {
        /// The boot server: a directory or ssh://[user@]host[:port]/path.
        #[arg(long)]
        to: String,
        /// Generations to keep (the newest).
        #[arg(long, default_value_t = 3)]
        keep: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run the lab boot server for a published directory: dnsmasq (DHCP or proxy-DHCP, TFTP of
    /// iPXE) and nginx (HTTP), in the foreground; or only write their configs (--print-config).
    Serve(ServeArgs),
    /// Network-boot an image in QEMU with the console on standard output.
    Run(BootArgs),
    /// Network-boot an image in QEMU and check that the node comes up.
    Check(CheckArgs),
    /// Container images for preloading.
    #[command(subcommand)]
    Oci(oci::OciCommand),
    /// The local caches (image blobs, compressed segments, reference images).
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

fn main() -> ExitCode {
    // clap quotes rejected values in its messages: those are escaped like ours.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprint!("{}", printable(&e.render().to_string()));
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", printable(&format!("{e:#}")));
            exit::classify(&e).into()
        }
    }
}

/// Messages quote paths, file names and parser excerpts taken from untrusted input: control
/// characters (an escape sequence that repaints the terminal, a bell, a carriage return that
/// hides the start of a line) are shown escaped (`\u{1b}`), never sent raw. Line breaks and tabs
/// of multi-line messages stay.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The reference worker's plan from this machine's packages, with its busybox-made images and,
/// for a stack kubelet that may join a cluster, the cluster DNS image from the stack's coredns.
fn host_plan(args: HostArgs) -> anyhow::Result<Plan> {
    let cache = diskless_oci::default_cache_dir()?.with_file_name("reference-images");
    let mut images = diskless_oci::host_reference_images(&cache)?;
    let options: host::HostOptions = args.into();
    let mut dns_warning = None;
    if options.runtime == host::Runtime::Stack && options.kubelet != host::Kubelet::None {
        match diskless_kube::stack::binary("coredns") {
            Ok(coredns) => images.push(diskless_oci::coredns_image(&cache, &coredns)?),
            Err(e) => {
                dns_warning = Some(format!(
                    "no coredns image ({e:#}): a cluster needs its DNS from elsewhere"
                ))
            }
        }
    }
    let (plan, mut warnings) = host::host_plan(&options, images)?;
    warnings.extend(dns_warning);
    for w in &warnings {
        eprintln!("warning: {}", printable(&w.to_string()));
    }
    Ok(plan)
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Plan {
            host: _,
            host_args,
            output,
        } => {
            let plan = host_plan(host_args)?;
            let mut text = serde_json::to_string_pretty(&plan)?;
            text.push('\n');
            match output {
                Some(path) => pipeline::write_atomic(&path, text.as_bytes())?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(())
        }
        Command::Build {
            plan,
            host: _,
            host_args,
            options,
            json,
        } => {
            let plan = match plan {
                Some(path) => Plan::load(&path)?,
                None => host_plan(host_args)?,
            };
            let report = pipeline::build(&plan, &options.into(), &diskless_oci::Preload)?;
            for w in &report.warnings {
                eprintln!("warning: {}", printable(&w.to_string()));
            }
            if json {
                print_json(&report)?;
            } else {
                report.print_summary();
            }
            Ok(())
        }
        Command::Inspect { out, args, json } => {
            let report = inspect::inspect(&out, &args.into())?;
            if json {
                print_json(&report)
            } else {
                report.print();
                Ok(())
            }
        }
        Command::Verify { out, to, json } => {
            let (report, what) = match (&out, &to) {
                (Some(out), _) => (verify::verify(out)?, out.display().to_string()),
                (None, Some(to)) => (publish::verify_dest(to)?, to.clone()),
                (None, None) => unreachable!("clap requires one"),
            };
            if json {
                print_json(&report)?;
            } else {
                report.print();
            }
            if report.ok() {
                Ok(())
            } else {
                Err(
                    exit::CheckFailed(format!("{} problem(s) in {what}", report.problems.len()))
                        .into(),
                )
            }
        }
        Command::Publish { args, json } => {
            let r = publish::publish(&args.into())?;
            if json {
                print_json(&r)?;
            } else {
                match r.generation {
                    Some(g) => println!(
                        "published {} to {} as generation {g}: {} objects ({} bytes) copied, {} host entries",
                        r.images.join(", "),
                        r.dest,
                        r.objects_copied,
                        r.bytes_copied,
                        r.hosts
                    ),
                    None if r.objects_repaired > 0 => println!(
                        "{} is up to date; {} damaged objects copied again",
                        r.dest, r.objects_repaired
                    ),
                    None => println!("{} is up to date: nothing to publish", r.dest),
                }
            }
            Ok(())
        }
        Command::Rollback { to, image } => {
            let g = publish::rollback(&to, &image)?;
            println!("rolled back {image} on {to}: generation {g}");
            Ok(())
        }
        Command::Gc { to, keep, json } => {
            let r = publish::gc(&to, keep)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "kept generations {:?}; removed {} generation(s), {} object(s), {} bytes",
                    r.kept_generations,
                    r.removed_generations.len(),
                    r.removed_objects,
                    r.freed_bytes
                );
            }
            Ok(())
        }
        Command::Serve(args) => match &args.print_config {
            Some(dir) => {
                for path in diskless_serve::print_config(&(&args).into(), dir)? {
                    println!("{}", path.display());
                }
                Ok(())
            }
            None => Ok(diskless_serve::serve(&(&args).into())?),
        },
        Command::Run(args) => Ok(diskless_harness::run(&args.into())?),
        Command::Check(args) if args.control_plane => Ok(diskless_harness::check_control_plane(
            &args.control_plane_options(),
        )?),
        Command::Check(args) => Ok(diskless_harness::check(&args.into())?),
        Command::Oci(cmd) => oci::main(&cmd),
        Command::Cache(cmd) => cache::main(&cmd),
    }
}
