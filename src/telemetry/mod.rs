//! What operators see: health endpoints and logging setup.

pub mod health;
pub mod logging;
