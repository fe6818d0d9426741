//! Support for generated code. Not a public API: anything here may change in any release.

pub use ::core::future::Future;
pub use ::core::result::Result;
pub use ::std::time::Duration;
pub use inventory;

pub use crate::key::{Fingerprint, Key, KeyHasher};
pub use crate::operation::{Location, OnConflict, Operation};
