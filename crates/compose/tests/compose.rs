//! lockbox-compose tests: one binary.
