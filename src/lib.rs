//! nss-agent: the on-box log uploader of the Zscaler NSS appliance.
//!
//! The data path, one stage a module: [`feed`] turns bytes from the NSS feed into records,
//! [`batch`] writes them into gzip files, [`spool`] keeps the sealed files on disk until
//! [`upload`] has handed each to MCAS. [`daemon`] wires the stages together; [`cli`] is what
//! an administrator types.

pub mod backoff;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod counter;
pub mod crashpoint;
pub mod daemon;
pub mod feed;
pub mod fsx;
pub mod https;
pub mod jwt;
pub mod latency;
pub mod logging;
pub mod mcas;
pub mod memory;
pub mod metrics;
pub mod pidfile;
pub mod pipeline;
pub mod privilege;
pub mod reach;
pub mod spool;
pub mod status;
pub mod sync;
pub mod untrusted;
pub mod upload;
pub mod versioned;
pub mod zia;
