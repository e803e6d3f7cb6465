//! `diskless check --join --lifecycle`: what a RAM-only cluster member lives through, proved on
//! the machine once it has joined (and its API pod runs):
//! 1. its kubelet is killed (by the check hook, in `diskless.check=lifecycle` mode): the init
//!    restarts it, and the node renews its Lease again;
//! 2. the API server is gone for 30 s: when it returns, the node renews its Lease and is Ready;
//! 3. its bootstrap token, minted by publish with a short TTL, expires (the API server refuses
//!    it) and publish, as a timer would, mints a new one; then a reboot (a power cycle, so
//!    everything in RAM is gone): the machine boots again through the boot server, bootstraps
//!    again with the new token in its node segment, and is the same Node, Ready, with a new
//!    boot ID, its API pod Running again.

use super::join::POD;
use super::report::Step;
use super::session::{End, Session};
use crate::lab::api::Api;
use crate::lab::join::{Lab, HOSTNAME};
use crate::machine::boot_server::BootFiles;
use crate::machine::qemu::Forward;
use crate::options::BootOptions;
use std::time::{Duration, Instant};

/// How long the API server stays away.
pub const API_DOWN: Duration = Duration::from_secs(30);
/// The TTL of the token publish mints for the lifecycle's node: long enough for its first boot
/// to bootstrap under TCG, short enough to expire before the reboot.
pub const MINTED_TOKEN_TTL: Duration = Duration::from_secs(90);

fn step(name: &str, t: Instant, result: Result<String, String>) -> Step {
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    };
    Step {
        name: name.into(),
        ok,
        detail,
        seconds: t.elapsed().as_secs_f64(),
    }
}

/// One look at what is being waited for.
pub(crate) enum Poll {
    Done(String),
    /// Not yet; what stood in the way (an API error), if anything.
    Pending(Option<String>),
}

impl From<Result<Option<String>, String>> for Poll {
    fn from(r: Result<Option<String>, String>) -> Poll {
        match r {
            Ok(Some(done)) => Poll::Done(done),
            Ok(None) => Poll::Pending(None),
            Err(e) => Poll::Pending(Some(e)),
        }
    }
}

/// Polls `f` every 0.5 s until it is done, fails, or `limit` passes; Err names the last
/// thing seen.
pub(crate) fn wait_for(limit: Duration, mut f: impl FnMut() -> Poll) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("nothing yet");
    loop {
        match f() {
            Poll::Done(done) => return Ok(done),
            Poll::Pending(why) => last = why.unwrap_or(last),
        }
        if Instant::now() > deadline {
            return Err(format!("not within {} s (last: {last})", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The node renews its Lease (a version other than `before`) and is Ready.
fn renews(api: &Api, before: Option<String>, limit: Duration) -> Result<String, String> {
    let t = Instant::now();
    wait_for(limit, || {
        let seen = || -> Result<Option<String>, String> {
            let now = api.lease_version(HOSTNAME)?;
            let ready = api.node_boot(HOSTNAME)?.is_some_and(|(_, r)| r);
            Ok((now != before && ready).then(|| {
                format!(
                    "lease renewed and node Ready {:.1} s later",
                    t.elapsed().as_secs_f64()
                )
            }))
        };
        seen().into()
    })
}

/// Step 1, after the check hook reported `kubelet-restart`: the new kubelet renews the lease.
pub(crate) fn kubelet_restarted(api: &Api, hook: Option<&str>) -> Step {
    let t = Instant::now();
    let result = match hook {
        None => Err("the check hook reported no kubelet-restart".to_string()),
        Some(detail) => api
            .lease_version(HOSTNAME)
            .and_then(|v| renews(api, v, Duration::from_secs(60)))
            .map(|r| format!("{detail}; {r}")),
    };
    step("kubelet-killed", t, result)
}

/// Step 2: the API server stopped for [`API_DOWN`], started again, and the node back.
pub(crate) fn api_server_away(lab: &mut Lab, api: &Api) -> Step {
    let t = Instant::now();
    let before = api.lease_version(HOSTNAME).ok().flatten();
    lab.cluster.stop_apiserver();
    std::thread::sleep(API_DOWN);
    let result = lab
        .cluster
        .start_apiserver()
        .map_err(|e| format!("the API server did not come back: {e:#}"))
        .and_then(|()| renews(api, before, Duration::from_secs(120)))
        .map(|r| format!("API server away {} s; {r}", API_DOWN.as_secs()));
    step("api-server-away", t, result)
}

/// Step 3a, with tokens minted by publish: the token the node booted with has expired and the
/// API server refuses it, so a reboot now could not rejoin with it; publish (as a timer would
/// run it) mints the node a new one. Then the reboot proves the node joins with that one.
pub(crate) fn token_expired_and_reminted(lab: &Lab) -> Step {
    let t = Instant::now();
    let result = (|| -> Result<String, String> {
        let (first, expires) = lab
            .first_token
            .clone()
            .ok_or("publish minted no token for the join host")?;
        // The API server checks the expiration itself (the tokencleaner deletes the Secret too).
        let refused = wait_for(Duration::from_secs(300), || {
            match lab.token_accepted(&first) {
                Ok(()) => Poll::Pending(None),
                Err(why) if why.contains("Unauthorized") => Poll::Done(why),
                Err(why) => Poll::Pending(Some(why)),
            }
        })?;
        lab.publish()
            .map_err(|e| format!("publishing again: {e:#}"))?;
        let (id, _) = first.split_once('.').unwrap_or_default();
        let new = lab
            .minted_tokens()
            .map_err(|e| format!("{e:#}"))?
            .into_iter()
            .find(|(bearer, _)| !bearer.starts_with(id))
            .ok_or("publish minted no new token")?;
        lab.token_accepted(&new.0)
            .map_err(|e| format!("the new token is refused: {e}"))?;
        let new_id = new.0.split_once('.').unwrap_or_default().0.to_string();
        Ok(format!(
            "the token the node booted with ({id}, expired {expires}) is refused \
             ({refused}); publish minted {new_id}, valid until {}",
            new.1
        ))
    })();
    step("token-expired-reminted", t, result)
}

/// Step 3's evidence, polled while the machine boots again: the same Node with another boot ID,
/// Ready, its API pod Running again.
pub(crate) fn rejoined(api: &Api, old_boot: &str) -> Result<Option<String>, String> {
    let Some((boot, ready)) = api.node_boot(HOSTNAME)? else {
        return Ok(None);
    };
    if boot.is_empty() || boot == old_boot || !ready {
        return Ok(None);
    }
    Ok(api
        .pod_running(POD)?
        .then(|| format!("the same node Ready with boot ID {boot}, its API pod Running again")))
}

/// The whole lifecycle on a joined machine (`session`, its check hook done): the kubelet killed,
/// the API server away, with minted tokens the token expired and reminted, then a power cycle
/// booting `again()`'s files; each step's evidence.
pub(crate) fn steps(
    lab: &mut Lab,
    session: &mut Session,
    a: &BootOptions,
    again: impl FnOnce() -> crate::error::Result<BootFiles>,
    forwards: &[Forward],
    verbose: bool,
) -> crate::error::Result<Vec<Step>> {
    let api = lab.api();
    let restarted = session
        .judge
        .checks
        .iter()
        .find(|c| {
            c.name == "kubelet-restart" && c.status == diskless_contract::console::CheckLine::OK
        })
        .map(|c| c.detail.clone());
    let mut steps = vec![
        kubelet_restarted(&api, restarted.as_deref()),
        api_server_away(lab, &api),
    ];
    if lab.first_token.is_some() {
        steps.push(token_expired_and_reminted(lab));
    }
    // A power cycle: the machine loses everything and boots again through the boot server.
    let old_boot = api.node_boot(HOSTNAME).ok().flatten().unwrap_or_default().0;
    session.guest.kill();
    let t = Instant::now();
    let files = again()?;
    let mut second = Session::start(a, &files, forwards, verbose)?;
    let limit = Duration::from_secs(a.check_timeout().min(400));
    let mut last = String::from("nothing yet");
    let mut done = None;
    let mut next = Instant::now();
    let end = second.follow(Instant::now() + limit, |_| {
        if Instant::now() < next {
            return false;
        }
        next = Instant::now() + Duration::from_millis(500);
        match rejoined(&api, &old_boot) {
            Ok(Some(d)) => done = Some(d),
            Ok(None) => {}
            Err(e) => last = e,
        }
        done.is_some()
    });
    let result = match (done, end) {
        (Some(d), _) => Ok(d),
        (None, End::Stopped) => Err(format!(
            "the second boot stopped: {}",
            second.judge.stopped.clone().unwrap_or_default()
        )),
        (None, _) => Err(format!("not within {} s (last: {last})", limit.as_secs())),
    };
    second.guest.kill();
    steps.push(step("reboot-rejoin", t, result));
    Ok(steps)
}
