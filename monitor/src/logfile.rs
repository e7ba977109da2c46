//! Where the dashboard's logs go, since the terminal is the UI: one file in
//! the monitor's state directory (`statedir`: `$STATE_DIRECTORY/monitor.log`
//! under systemd, else `$XDG_STATE_HOME/heartbeat/monitor.log`, else
//! `~/.local/state/heartbeat/monitor.log`), or `--log-file PATH`.
//!
//! The file is the user's alone (0600, in a 0700 directory we create), is
//! never opened through a symlink (a planted link cannot make the monitor
//! overwrite another file), is refused when another user owns it (that user
//! could read every line, whatever its mode), and is capped: past [`MAX_BYTES`] it is moved to
//! `monitor.log.1`, replacing the previous one, and a new file is started.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One file's cap; with the one rotated copy, logs take at most twice this.
pub const MAX_BYTES: u64 = 5 * 1024 * 1024;

/// The default location, when the environment names a home for it.
pub fn default_path() -> Option<PathBuf> {
    Some(crate::statedir::state_dir()?.join("monitor.log"))
}

/// A log file that rotates itself. Use it behind a `Mutex` as a tracing writer.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl LogFile {
    /// Open (or create) `path` for appending, creating its directory if need be.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_capped(path, MAX_BYTES)
    }

    fn open_capped(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = open_private(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            written,
            max_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = open_private(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// Append-only, created 0600, refused if `path` is a symlink or another
/// user's file; an existing file of ours that others could read is
/// narrowed to 0600. The errors say which, in words.
fn open_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            // O_NOFOLLOW's refusal reads "Too many levels of symbolic links".
            Some(libc::ELOOP) => {
                io::Error::other("it is a symbolic link, and the log is never written through one")
            }
            _ => error,
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if std::os::unix::fs::MetadataExt::uid(&metadata) != me {
        return Err(io::Error::other(format!(
            "it belongs to another user (uid {}), who could read the log; remove it or choose another path",
            std::os::unix::fs::MetadataExt::uid(&metadata)
        )));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Rotate between lines, never inside one: tracing writes a line a call.
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hb-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn created_for_the_user_alone_in_a_private_directory() {
        let dir = scratch("private");
        let path = dir.join("state/heartbeat/monitor.log");
        let mut log = LogFile::open(&path).unwrap();
        writeln!(log, "hello").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_refused_and_its_target_untouched() {
        let dir = scratch("symlink");
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("monitor.log");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(LogFile::open(&path).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn another_users_file_is_refused_untouched() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Only root can give a file away; nothing to try as anyone else.
            return;
        }
        let dir = scratch("owner");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.log");
        std::fs::write(&path, "theirs\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let error = LogFile::open(&path).unwrap_err().to_string();
        assert!(
            error.contains("belongs to another user (uid 65534)"),
            "{error}"
        );
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_in_words() {
        let dir = scratch("words");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.log");
        std::os::unix::fs::symlink(dir.join("elsewhere"), &path).unwrap();
        let error = LogFile::open(&path).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_existing_readable_file_is_narrowed_and_appended_to() {
        let dir = scratch("narrow");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.log");
        std::fs::write(&path, "earlier\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut log = LogFile::open(&path).unwrap();
        writeln!(log, "later").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\nlater\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn past_the_cap_the_file_rotates_keeping_one_old_copy() {
        let dir = scratch("rotate");
        let path = dir.join("monitor.log");
        let mut log = LogFile::open_capped(&path, 100).unwrap();
        for i in 0..25 {
            writeln!(log, "line {i:02} of the log").unwrap(); // 19 bytes
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.join("monitor.log.1")).unwrap().len();
        assert!(current <= 100 && old <= 100, "{current} {old}");
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("line 24 of the log\n")
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
