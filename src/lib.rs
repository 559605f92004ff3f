//! nss-agent: the on-box log uploader of the Zscaler NSS appliance.
//!
//! # Layout
//!
//! The modules follow the data path in one direction (none imports one further up the
//! path); ARCHITECTURE.md at the repository's root says what each file holds.
//!
//! - **The data path:** [`feed`] turns bytes from the NSS feed into records, handed on as
//!   [`pipeline`] types; [`batch`] writes them into gzip files; [`spool`] keeps the sealed
//!   files on disk until [`upload`] has handed each to MCAS; [`latency`] measures the wait.
//! - **The side loop:** [`sync`] makes MCAS's unsanctioned apps a URL category in ZIA.
//! - **The remote services:** [`mcas`] and [`zia`], their one [`https`] client, [`reach`],
//!   [`jwt`], [`retry`].
//! - **Control:** [`daemon`] wires the stages together; [`cli`] is what an administrator
//!   types, reading [`config`]; [`control`], [`status`], [`metrics`], [`pidfile`],
//!   [`privilege`], [`untrusted`].
//! - **Infrastructure:** [`counter`], [`memory`], [`fsx`], [`versioned`], [`clock`],
//!   [`crashpoint`], [`error_text`], [`exit`], [`logging`].

// The data path.
pub(crate) mod batch;
pub mod feed;
pub(crate) mod latency;
pub mod pipeline;
pub mod spool;
pub(crate) mod upload;

// The side loop.
pub mod sync;

// The remote services.
pub mod https;
pub(crate) mod jwt;
pub mod mcas;
pub(crate) mod reach;
pub(crate) mod retry;
pub mod zia;

// Control.
pub mod cli;
pub mod config;
pub mod control;
pub(crate) mod daemon;
pub(crate) mod metrics;
pub mod pidfile;
pub(crate) mod privilege;
pub(crate) mod status;
pub mod untrusted;

// Infrastructure.
pub(crate) mod clock;
pub(crate) mod counter;
pub(crate) mod crashpoint;
pub mod error_text;
pub mod exit;
pub(crate) mod fsx;
pub mod logging;
pub(crate) mod memory;
pub(crate) mod versioned;
