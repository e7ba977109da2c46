//! The async runtime both binaries run on.

/// A multi-threaded tokio runtime with one worker.
///
/// One worker, because a heartbeat process is a pipeline of tasks handing
/// batches to each other (the link, the engine, the sinks): on one worker a
/// hand-off is a push onto its run queue, on two it is often a futex wake of
/// the other thread, and those wakes were the largest cost left per echo
/// (BENCHMARKS.md, "The monitor at scale": 12.8 → 10.8 µs per echo at 2,000
/// services, averaged over four alternating runs). lapin does its socket
/// I/O on a thread of its own, so the broker is still read while the worker
/// is busy.
///
/// Not the current-thread flavour: lapin's I/O thread connects through
/// `Handle::block_on`, which cannot drive a current-thread runtime's I/O from
/// another thread; tried, the monitor sometimes heard nothing.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}
