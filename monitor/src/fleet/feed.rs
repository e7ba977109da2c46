//! The one task that takes the engine's stream: it applies each batch of
//! updates to the [`Fleet`] model (one short write lock per batch), then
//! hands the same updates to every [`Sink`]. So a sink that receives an
//! update finds the model already saying so.

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Shared, Sink};
use crate::update::Update;

/// Updates applied under one lock at most: a flood is taken in slices, so
/// a reader never waits for more than one.
const MAX_BATCH: usize = 256;

/// Apply the engine's updates to `fleet` and pass them on, until the
/// engine's stream ends.
pub async fn run(mut engine: mpsc::Receiver<Update>, fleet: Shared, sinks: Vec<Sink>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while engine.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (now, wall) = (Instant::now(), Utc::now());
        {
            let mut model = fleet.write();
            for update in &batch {
                model.apply(update, now, wall);
            }
        }
        for update in batch.drain(..) {
            if let Some((last, others)) = sinks.split_last() {
                for sink in others {
                    sink.offer(&update);
                }
                last.send(update);
            }
        }
    }
}
