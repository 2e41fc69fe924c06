//! Test and benchmark stand-in for the `lockbox` binary's process delivery.
//!
//! * `lockbox-tmpfs-shim <shim arguments>`: the shim itself, as `lockbox __shim` will run it.
//! * `lockbox-tmpfs-shim --supervise [--abs PATH] [--state DIR] -- CMD…`: a minimal
//!   `lockbox run` (supervisor in this process, shim = this binary) delivering one fixed test
//!   file `probe` (and at `PATH`, recording placeholders in `DIR`), so tests can put a whole
//!   run inside a terminal session or kill its supervisor. Never used with real secrets.
//! * `lockbox-tmpfs-shim --record-signals FILE`: a command that appends one line per SIGINT it
//!   receives, naming where it came from (`kernel` = the terminal, `sent PID` = a process), and
//!   exits 143 on SIGTERM. Signals do not queue, so counting them in a shell cannot tell a
//!   relayed duplicate from the original; their origin can.

use std::process::exit;

use lockbox_tmpfs::{RunOptions, SecretFile, ShimCommand, Supervisor};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--supervise") {
        let mut files = vec![SecretFile::new("probe", b"probe".to_vec())];
        let mut state = None;
        let mut it = args.into_iter().skip(1);
        while let Some(a) = it.next() {
            match a.to_str() {
                Some("--abs") => files.push(SecretFile::new(
                    it.next().expect("--abs PATH"),
                    b"probe".to_vec(),
                )),
                Some("--state") => state = it.next(),
                _ => break,
            }
        }
        let command: Vec<_> = it.collect();
        let shim = ShimCommand::current_exe_subcommand("--shim").unwrap_or_else(|e| {
            eprintln!("{e}");
            exit(125)
        });
        let mut opts = RunOptions::new(command);
        if let Some(dir) = state {
            opts.state_dir = dir.into();
        }
        let code = Supervisor::spawn(&shim, opts, files)
            .and_then(Supervisor::wait)
            .unwrap_or_else(|e| {
                eprintln!("{e}");
                125
            });
        exit(code);
    }
    if args.first().is_some_and(|a| a == "--record-signals") {
        record_signals(args.get(1).expect("--record-signals FILE").into());
    }
    // `--shim` is the subcommand name `current_exe_subcommand` put first above.
    let args = if args.first().is_some_and(|a| a == "--shim") {
        args.into_iter().skip(1).collect()
    } else {
        args
    };
    lockbox_tmpfs::shim_main(args)
}

fn record_signals(path: std::path::PathBuf) -> ! {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::low_level::siginfo::Cause;
    use std::io::Write;

    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM]).expect("signals");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("record file");
    writeln!(out, "ready").expect("write");
    for info in signals.forever() {
        if info.signal == SIGTERM {
            exit(128 + SIGTERM);
        }
        let origin = match (&info.cause, &info.process) {
            (Cause::Kernel, _) => "kernel".to_owned(),
            (_, Some(p)) => format!("sent {}", p.pid),
            (cause, None) => format!("{cause:?}"),
        };
        writeln!(out, "INT {origin}").expect("write");
    }
    exit(1)
}
