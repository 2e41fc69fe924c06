//! A stand-alone `lockbox scan` for benchmarks until the `lockbox` binary wires the
//! subcommand: same arguments, same exit codes.

use clap::Parser;

#[derive(Parser)]
#[command(name = "lockbox-scan", after_help = lockbox_scan::SCAN_AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    scan: lockbox_scan::ScanArgs,
}

fn main() {
    let cli = Cli::parse();
    let code = lockbox_scan::run(
        &cli.scan,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
