use crate::identity::Identity;

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
    /// `heartbeat.service.<service>/<instance>`. Names never hold `/`, so two
    /// different (service, instance) pairs never share a queue (with a `.`,
    /// `a.b`/`c` and `a`/`b.c` would), and with names of at most
    /// [`MAX_NAME_LEN`](crate::wire::MAX_NAME_LEN) bytes it fits AMQP's 255.
    pub fn service(identity: &Identity) -> Self {
        Self {
            queue: format!(
                "{SERVICE_QUEUE_PREFIX}{}/{}",
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

/// Who a queue stands for, as a person names it: `orders/vm` for a service
/// instance's queue, `monitor ops-1` for a monitor's.
pub fn owner_of(queue: &str) -> String {
    if let Some(identity) = queue.strip_prefix(SERVICE_QUEUE_PREFIX) {
        identity.to_owned()
    } else if let Some(id) = queue.strip_prefix(MONITOR_QUEUE_PREFIX) {
        format!("monitor {id}")
    } else {
        queue.to_owned()
    }
}

/// The monitor id in a monitor's queue name, if `queue` is one.
pub fn monitor_id_of(queue: &str) -> Option<&str> {
    queue
        .strip_prefix(MONITOR_QUEUE_PREFIX)
        .filter(|id| crate::wire::is_valid_name(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_NAME_LEN;

    #[test]
    fn distinct_identities_never_share_a_queue() {
        let a = Endpoint::service(&Identity::new("a.b", "c").unwrap());
        let b = Endpoint::service(&Identity::new("a", "b.c").unwrap());
        assert_ne!(a.queue, b.queue);
    }

    #[test]
    fn the_longest_names_fit_an_amqp_short_string() {
        let long = "x".repeat(MAX_NAME_LEN);
        assert!(
            Endpoint::service(&Identity::new(&long, &long).unwrap())
                .queue
                .len()
                <= 255
        );
        assert!(Endpoint::monitor(&long).queue.len() <= 255);
    }
}
