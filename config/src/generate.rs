//! `--generate man|complete-bash|complete-zsh|complete-fish`: the man page
//! and shell completions of a binary, written from its own argument parser
//! to stdout (as ripgrep does), so they never drift from `--help`.
//! `scripts/package.sh` installs what they print.

use std::io::Write;
use std::process::ExitCode;

use clap_complete::Shell;

const WHAT: &str = "man, complete-bash, complete-zsh or complete-fish";

/// With `--generate WHAT` as the only arguments, write it and say how to
/// exit; otherwise `None`, and the flags are parsed as usual.
pub(crate) fn from_args<T: clap::CommandFactory>() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = match args.as_slice() {
        [flag, what] if flag == "--generate" => what.as_str(),
        [flag] if flag == "--generate" => "",
        _ => return None,
    };
    let mut command = T::command();
    let name = command.get_name().to_owned();
    let mut out = Vec::new();
    let written = match what {
        "man" => clap_mangen::Man::new(command).render(&mut out),
        other => match other.strip_prefix("complete-").and_then(shell) {
            Some(shell) => {
                clap_complete::generate(shell, &mut command, &name, &mut out);
                Ok(())
            }
            None => {
                eprintln!("{name}: --generate takes {WHAT}, not {other:?}");
                return Some(ExitCode::from(2));
            }
        },
    };
    match written.and_then(|()| std::io::stdout().write_all(&out)) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("{name}: cannot write the {what}: {error}");
            Some(ExitCode::FAILURE)
        }
    }
}

fn shell(name: &str) -> Option<Shell> {
    match name {
        "bash" => Some(Shell::Bash),
        "zsh" => Some(Shell::Zsh),
        "fish" => Some(Shell::Fish),
        _ => None,
    }
}
