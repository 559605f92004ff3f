//! What the tests share: the real binary run against the emulators, the records they send
//! and the count of what MCAS received.

/// Records in the NSS feed's shape.
pub mod generate;
/// The agent, its tenant and its files; waits on conditions, never on time.
pub mod harness;
/// Sent against delivered: missing and duplicated records.
pub mod tally;
