//! End-to-end tests: the real `nss` binary, records in over TCP and from files, gzip
//! files out at the MCAS emulator.

mod backpressure;
mod config;
mod configure;
mod configure_entra;
mod delivery;
mod durability;
mod faults;
mod feed;
mod harness;
mod observe;
mod rate;
mod service;
mod signals;
mod sync;
mod unit;
