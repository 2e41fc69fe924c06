//! Wire types shared by the lockbox daemon and its clients: the Docker-shaped JSON objects,
//! the `--secret` reference syntax, and the documented exit codes.
#![forbid(unsafe_code)]

pub mod reference;
