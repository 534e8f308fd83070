//! What the commands do. Each command in `commands` parses its flags and
//! calls one function here.

pub mod build;
pub mod connect;
pub mod init;
pub mod inspect;
pub mod jobs;
pub mod plan;
pub mod prepare;
pub mod runners;
