//! Flags: clap's parsing, with any URL's password hidden in its errors, and
//! `--generate` (see `generate`).

use crate::generate;

/// Parse flags as clap does, except that clap's message for a bad argument
/// quotes it, and a URL typed without `--url` would show its password:
/// print it with credentials hidden. Exits 2 for bad flags, 0 for `--help`
/// and `--version`, as clap itself would; `--generate` writes the man page
/// or a shell completion instead (see `generate`).
pub fn parse_flags<T: clap::Parser>() -> Result<T, std::process::ExitCode> {
    if let Some(exit) = generate::from_args::<T>() {
        return Err(exit);
    }
    T::try_parse().map_err(|error| {
        let text = orchestrator_lib::plumbing::redact_credentials_in(&error.to_string());
        if error.use_stderr() {
            eprintln!("{}", one_line(&text));
            std::process::ExitCode::from(2)
        } else {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
    })
}

/// A clap error as one line, as every other bad setting is: its first
/// paragraph (the error, and the arguments it names on the lines below it),
/// joined; the usage and the tips after it are left to `--help`.
fn one_line(error: &str) -> String {
    let first = error.trim_start().split("\n\n").next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    format!("{} (see --help)", words.join(" "))
}
