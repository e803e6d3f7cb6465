//! Conditions watched from the hook's start, each in a thread of its own, so the timeline says
//! when the kubelet became healthy or the first pod ran, not when the sequential checks got
//! round to asking (the test container before them takes seconds under TCG).

use diskless_init::log;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Unset while the probe runs; then its first success's uptime or its last error.
type Outcome = Mutex<Option<Result<f64, String>>>;

/// The guest uptime at which a probe first succeeded, or its last error once `limit` passed.
pub struct FirstSeen {
    outcome: Arc<(Outcome, Condvar)>,
}

impl FirstSeen {
    /// Polls `probe` every `every` until it succeeds or `limit` passes.
    pub fn start(
        every: Duration,
        limit: Duration,
        mut probe: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> FirstSeen {
        let outcome = Arc::new((Mutex::new(None), Condvar::new()));
        let shared = outcome.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let result = loop {
                match probe() {
                    Ok(()) => break Ok(log::uptime()),
                    Err(e) if Instant::now() > deadline => break Err(e),
                    Err(_) => std::thread::sleep(every),
                }
            };
            let (lock, done) = &*shared;
            *lock.lock().unwrap() = Some(result);
            done.notify_all();
        });
        FirstSeen { outcome }
    }

    /// Waits for the outcome.
    pub fn wait(&self) -> Result<f64, String> {
        let (lock, done) = &*self.outcome;
        let guard = done
            .wait_while(lock.lock().unwrap(), |o| o.is_none())
            .unwrap();
        guard.clone().expect("set before notify")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_success_is_kept_and_failures_say_why() {
        let mut n = 0;
        let ok = FirstSeen::start(
            Duration::from_millis(1),
            Duration::from_secs(5),
            move || {
                n += 1;
                if n >= 3 {
                    Ok(())
                } else {
                    Err(format!("try {n}"))
                }
            },
        );
        assert!(ok.wait().is_ok());
        let never = FirstSeen::start(Duration::from_millis(1), Duration::from_millis(20), || {
            Err("not yet".into())
        });
        assert_eq!(never.wait(), Err("not yet".into()));
    }
}
