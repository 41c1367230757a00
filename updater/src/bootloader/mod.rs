//! Bootloader backends behind one trait, and the on-disk environment formats they use.

pub mod grubenv;
pub mod ubootenv;
