//! End-to-end tests: the real `nss` binary, records in over TCP and from files, gzip
//! files out at the MCAS emulator, URL categories into the ZIA emulator.

// root's commands beside a running daemon: reload, sync-now, status, stop.
mod admin;
// MCAS refusing everything under a live feed: memory held, nothing lost.
mod backpressure;
// `nss troubleshoot mcas` and the blob host of the upload URLs.
mod blob_host;
// bad configuration refused before anything starts (exit 78, the key named).
mod config;
// `nss configure-mcas` and `disable-mcas`: the prompts and the flags.
mod configure;
// `nss configure-mcas` for an Entra application.
mod configure_entra;
// refusals of the whole tenant: an unknown data source, a wrong format.
mod data_source;
// records in, gzip batches out at MCAS, each record exactly once.
mod delivery;
// restarts and crashes while a tailed file grows.
mod durability;
// the daemon and troubleshoot with Entra credentials.
mod entra;
// the MCAS client against the emulator's token endpoint.
mod entra_client;
// MCAS failing in every way it can: retried, paused, never lost.
mod faults;
// awkward input on the feed: nothing lost but what must be dropped.
mod feed;
// hostile load on the feed: floods, partial records, oversized records.
mod hostile;
// failures in the middle of a step: crash points, rotations mid-read.
mod midstep;
// what a person and a monitor see: status, troubleshoot, /metrics.
mod observe;
// what MCAS makes of the uploaded lines.
mod parsed;
// the outbound proxy through a real CONNECT proxy process.
mod proxy;
// delivery within MCAS's throttle: batch sizing and merges.
mod rate;
// the spool's disk remounted read-only under a live feed.
mod readonly;
// no output quotes a secret.
mod secrets;
// `nss start | stop | restart` without systemd.
mod service;
// SIGTERM and SIGHUP under load.
mod signals;
// shared helpers: the harness, the records, the tally.
mod support;
// the unsanctioned-apps sync through `nss sync-now` and `url-categories`.
mod sync;
// the systemd unit: valid and hardened (a real systemd boots in the systemd suite).
mod systemd_unit;
// root's commands against what the daemon's account can write.
mod untrusted;
// a batch that keeps failing; an unanswered done_upload.
mod upload_faults;
// the tenant's calls used well, and the return after an outage.
mod upload_recovery;
// state files of a newer version refused, nothing deleted.
mod versions;
// the ZIA client against the ZIA emulator.
mod zia;
// the real binary against ZIA's answers as its SDKs meet them.
mod zia_answers;
// the unsanctioned apps reaching ZIA through the real binary.
mod zia_sync;
