//! MCAS emulator.
