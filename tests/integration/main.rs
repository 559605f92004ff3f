//! End-to-end tests: the real `nss` binary, records in over TCP and from files, gzip
//! files out at the MCAS emulator.

mod admin;
mod backpressure;
mod blob_host;
mod config;
mod configure;
mod configure_entra;
mod data_source;
mod delivery;
mod durability;
mod entra;
mod entra_client;
mod faults;
mod feed;
mod generate;
mod harness;
mod hostile;
mod midstep;
mod observe;
mod parsed;
mod proxy;
mod rate;
mod readonly;
mod secrets;
mod service;
mod signals;
mod sync;
mod tally;
mod unit;
mod untrusted;
mod upload_faults;
mod upload_recovery;
mod versions;
mod zia;
mod zia_answers;
mod zia_sync;
