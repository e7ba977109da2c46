use tokio_util::sync::CancellationToken;

/// Cancel `token` on Ctrl+C (SIGINT) or SIGTERM, so a process can fan one
/// shutdown out to all its tasks. Spawns a task; needs a tokio runtime.
pub fn cancel_on_shutdown_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

/// Make a panic in any thread or task end the whole process with a non-zero
/// code (SIGABRT, after the usual message). Unwinding would end only the
/// task that panicked: a dead link task looks like a closed link, and the
/// process would go on deaf, or exit 0. Call first thing in `main`; hooks
/// installed later (the dashboard's, which restores the terminal) run first.
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}
