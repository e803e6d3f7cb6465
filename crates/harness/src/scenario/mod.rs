//! The scenarios: what is booted and what must be seen. [`boot`] is `run` and `check` (with
//! `--join` [`join`], with `--lifecycle` [`lifecycle`]; `--image-pressure` is a check-hook mode
//! judged like any check), [`control_plane`] is `check --control-plane`, [`cluster`] the
//! two-worker cluster on a lab network. Those that read a console share one boot-and-judge
//! loop ([`session`], with [`judge`] reading the lines); all hand back one [`report::Report`],
//! the common verdict with each scenario's own detail.

pub mod boot;
pub mod cluster;
pub mod control_plane;
pub mod join;
pub mod judge;
pub mod lifecycle;
pub mod memory;
pub mod report;
pub mod session;
