use crate::identity::Identity;
use crate::scope::Scope;

/// The fanout exchange monitors of the default scope publish pings to;
/// every service queue of that scope is bound to it. Durable, so it
/// survives a broker restart; the messages themselves are transient
/// because a ping is worthless once the next one is due. A named scope's is
/// [`ping_exchange`]`(scope)`, `heartbeat:<scope>:ping`.
pub const PING_EXCHANGE: &str = "heartbeat.ping";

const SERVICE_QUEUE: &str = "service.";
const MONITOR_QUEUE: &str = "monitor.";

/// `heartbeat.ping` in the default scope, `heartbeat:<scope>:ping` in a named one.
pub fn ping_exchange(scope: &Scope) -> String {
    format!("{}ping", scope.prefix())
}

/// `heartbeat.monitor.` in the default scope, `heartbeat:<scope>:monitor.`
/// in a named one: what a monitor's queue name starts with.
pub fn monitor_queue_prefix(scope: &Scope) -> String {
    format!("{}{MONITOR_QUEUE}", scope.prefix())
}

/// `heartbeat.service.` (or `heartbeat:<scope>:service.`): what a
/// service's queue name starts with.
pub fn service_queue_prefix(scope: &Scope) -> String {
    format!("{}{SERVICE_QUEUE}", scope.prefix())
}

/// What a participant does, which decides how its queue is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives pings: its queue is bound to its scope's ping exchange.
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
    /// Its scope: a service's queue is bound to this scope's ping exchange,
    /// and a monitor broadcasts its pings to it.
    pub scope: Scope,
}

impl Endpoint {
    /// `heartbeat.service.<service>/<instance>` in the default scope,
    /// `heartbeat:<scope>:service.<service>/<instance>` in the identity's
    /// named one. Names never hold `/`, so two different (service, instance)
    /// pairs never share a queue (with a `.`, `a.b`/`c` and `a`/`b.c`
    /// would), and with names of at most [`MAX_NAME_LEN`](crate::wire::MAX_NAME_LEN)
    /// bytes and a scope of at most [`MAX_SCOPE_LEN`](crate::scope::MAX_SCOPE_LEN)
    /// it fits AMQP's 255.
    pub fn service(identity: &Identity) -> Self {
        Self {
            queue: format!(
                "{}{}/{}",
                service_queue_prefix(&identity.scope),
                identity.service,
                identity.instance
            ),
            role: Role::Service,
            scope: identity.scope.clone(),
        }
    }

    /// A monitor's queue in the default scope.
    pub fn monitor(monitor_id: &str) -> Self {
        Self::monitor_in(&Scope::default(), monitor_id)
    }

    /// `heartbeat.monitor.<id>`, or `heartbeat:<scope>:monitor.<id>`.
    pub fn monitor_in(scope: &Scope, monitor_id: &str) -> Self {
        Self {
            queue: format!("{}{monitor_id}", monitor_queue_prefix(scope)),
            role: Role::Monitor,
            scope: scope.clone(),
        }
    }
}

/// Who a queue stands for, as a person names it: `orders/vm` for a service
/// instance's queue, `monitor ops-1` for a monitor's (`in scope staging`
/// after either, for a named scope's).
pub fn owner_of(queue: &str) -> String {
    let (scope, rest) = match queue.strip_prefix("heartbeat:") {
        Some(scoped) => match scoped.split_once(':') {
            Some((scope, rest)) => (Some(scope), rest),
            None => return queue.to_owned(),
        },
        None => match queue.strip_prefix("heartbeat.") {
            Some(rest) => (None, rest),
            None => return queue.to_owned(),
        },
    };
    let owner = if let Some(identity) = rest.strip_prefix(SERVICE_QUEUE) {
        identity.to_owned()
    } else if let Some(id) = rest.strip_prefix(MONITOR_QUEUE) {
        format!("monitor {id}")
    } else {
        return queue.to_owned();
    };
    match scope {
        Some(scope) => format!("{owner} in scope {scope}"),
        None => owner,
    }
}

/// The monitor id in a monitor's queue name of `scope`, if `queue` is one.
pub fn monitor_id_of<'q>(scope: &Scope, queue: &'q str) -> Option<&'q str> {
    queue
        .strip_prefix(monitor_queue_prefix(scope).as_str())
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
        let scope = Scope::new(&"s".repeat(crate::scope::MAX_SCOPE_LEN)).unwrap();
        let scoped = Identity::new(&long, &long).unwrap().in_scope(scope.clone());
        assert!(Endpoint::service(&scoped).queue.len() <= 255);
        assert!(Endpoint::monitor_in(&scope, &long).queue.len() <= 255);
    }

    #[test]
    fn the_default_scope_keeps_the_names_and_scopes_never_share_one() {
        let me = Identity::new("orders", "o-1").unwrap();
        assert_eq!(Endpoint::service(&me).queue, "heartbeat.service.orders/o-1");
        assert_eq!(Endpoint::monitor("m").queue, "heartbeat.monitor.m");
        assert_eq!(ping_exchange(&Scope::default()), PING_EXCHANGE);
        let staging = Scope::new("staging").unwrap();
        let scoped = me.clone().in_scope(staging.clone());
        assert_eq!(
            Endpoint::service(&scoped).queue,
            "heartbeat:staging:service.orders/o-1"
        );
        assert_eq!(
            Endpoint::monitor_in(&staging, "m").queue,
            "heartbeat:staging:monitor.m"
        );
        assert_eq!(ping_exchange(&staging), "heartbeat:staging:ping");
        // A scope named like a prefix cannot reach into the default's names.
        let service = Scope::new("service").unwrap();
        let odd = Identity::new("service.orders", "o-1").unwrap();
        assert_ne!(
            Endpoint::service(&odd).queue,
            Endpoint::service(&me.clone().in_scope(service)).queue
        );
        // Each scope knows only its own monitors' queues.
        assert_eq!(
            monitor_id_of(&staging, "heartbeat:staging:monitor.m"),
            Some("m")
        );
        assert_eq!(
            monitor_id_of(&Scope::default(), "heartbeat:staging:monitor.m"),
            None
        );
        assert_eq!(monitor_id_of(&staging, "heartbeat.monitor.m"), None);
        assert_eq!(owner_of("heartbeat.service.orders/o-1"), "orders/o-1");
        assert_eq!(
            owner_of("heartbeat:staging:service.orders/o-1"),
            "orders/o-1 in scope staging"
        );
        assert_eq!(owner_of("heartbeat.monitor.m"), "monitor m");
    }
}
