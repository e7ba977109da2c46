//! The monitor's state directory, where what it keeps between runs lives
//! (the dashboard's log, the history database): `$STATE_DIRECTORY` under
//! systemd (`StateDirectory=`), else `$XDG_STATE_HOME/heartbeat`, else
//! `~/.local/state/heartbeat`.

use std::path::PathBuf;

/// The state directory, when the environment names one (it may not exist yet).
pub fn state_dir() -> Option<PathBuf> {
    // systemd sets a colon-separated list when the unit names several; ours is the first.
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| {
            dirs.to_str()
                .and_then(|d| d.split(':').next())
                .map(PathBuf::from)
        })
        .filter(|dir| dir.is_absolute())
    {
        return Some(dir);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(state.join("heartbeat"))
}
