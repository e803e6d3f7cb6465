//! Running the image's programs (busybox `ip`, `udhcpc`, `ctr`, `wget`) from the network step,
//! the DHCP script and the check binary: one way, so every failure reads the same, naming the
//! command, its exit status and what it printed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A command that could not run, ran too long or failed; `command` is its argv joined by spaces.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{command}: {err}")]
    Spawn {
        command: String,
        err: std::io::Error,
    },
    #[error("`{command}` timed out after {} s", limit.as_secs())]
    TimedOut { command: String, limit: Duration },
    /// `said` is its stdout and stderr, trimmed, joined by a space (ctr and wget explain
    /// themselves on stdout).
    #[error("`{command}` failed ({status}): {said}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        said: String,
    },
}

/// Runs `argv` (the program found on `PATH`) with an empty stdin and returns its stdout. With a
/// `limit`, a command still running then is killed: the check binary must finish even when
/// containerd hangs; the boot's own commands (`ip`, `udhcpc -n`) end by themselves.
pub fn run(argv: &[&str], limit: Option<Duration>) -> Result<String, RunError> {
    run_env(argv, &[], limit)
}

/// [`run`] with variables added to the inherited environment.
pub fn run_env(
    argv: &[&str],
    env: &[(&str, &str)],
    limit: Option<Duration>,
) -> Result<String, RunError> {
    let spawn = |err| RunError::Spawn {
        command: argv.join(" "),
        err,
    };
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(limit) = limit {
        // Polling, not a second thread: a command that outlives its limit is killed here.
        // Its output stays in the pipe meanwhile, which holds the few lines these print.
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RunError::TimedOut {
                        command: argv.join(" "),
                        limit,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(spawn(e)),
            }
        }
    }
    let out = child.wait_with_output().map_err(spawn)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    // Some programs (ctr, wget) explain themselves on stdout.
    let said: Vec<String> = [&out.stdout, &out.stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Err(RunError::Failed {
        command: argv.join(" "),
        status: out.status,
        said: said.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_on_success() {
        assert_eq!(run(&["sh", "-c", "echo hi"], None).unwrap(), "hi\n");
        let env = run_env(&["sh", "-c", "echo $X"], &[("X", "y")], None).unwrap();
        assert_eq!(env, "y\n");
    }

    #[test]
    fn failures_name_the_command_status_and_output() {
        let e = run(&["sh", "-c", "echo out; echo err >&2; exit 3"], None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "`sh -c echo out; echo err >&2; exit 3` failed (exit status: 3): out err"
        );
        let e = run(&["/nonexistent/x"], None).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x: "), "{e}");
    }

    #[test]
    fn a_command_past_its_limit_is_killed() {
        let t = Instant::now();
        let e = run(&["sleep", "10"], Some(Duration::from_millis(200)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sleep 10` timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
