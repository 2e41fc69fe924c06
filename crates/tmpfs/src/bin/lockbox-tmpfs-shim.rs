//! Test and benchmark stand-in for `lockbox __shim`: the same entry point, in a binary small
//! enough to start fast and free of the CLI. The real `lockbox` binary exposes
//! [`lockbox_tmpfs::shim_main`] as a hidden subcommand instead.

fn main() {
    lockbox_tmpfs::shim_main(std::env::args_os().skip(1).collect())
}
