use crate::responder::Identity;

/// The fanout exchange monitors publish pings to; every service queue is bound
/// to it. Durable, so it survives a broker restart; the messages themselves
/// are transient because a ping is worthless once the next one is due.
pub const PING_EXCHANGE: &str = "heartbeat.ping";

const SERVICE_QUEUE_PREFIX: &str = "heartbeat.service.";
const MONITOR_QUEUE_PREFIX: &str = "heartbeat.monitor.";

/// What a participant does, which decides how its queue is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives pings: its queue is bound to [`PING_EXCHANGE`].
    Service,
    /// Receives echoes and goodbyes addressed to its queue through `reply_to`.
    Monitor,
}

/// The queue a participant consumes from. Names are chosen by us, never by
/// the server, so that a reconnect redeclares the same queue and the name can
/// be read in the broker's management UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub queue: String,
    pub role: Role,
}

impl Endpoint {
    pub fn service(identity: &Identity) -> Self {
        Self {
            queue: format!(
                "{SERVICE_QUEUE_PREFIX}{}.{}",
                identity.service, identity.instance
            ),
            role: Role::Service,
        }
    }

    pub fn monitor(monitor_id: &str) -> Self {
        Self {
            queue: format!("{MONITOR_QUEUE_PREFIX}{monitor_id}"),
            role: Role::Monitor,
        }
    }
}
