//! Docker's `--secret` reference syntax (owned by the delivery work; see crates/tmpfs).
