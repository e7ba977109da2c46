//! What the monitor, the mock fleet and the tests build on, beneath the
//! service author's surface at the crate's root: the parts of a [`Link`](crate::Link),
//! the in-process broker, many endpoints on one connection, and the helpers
//! the binaries share. A service that only answers pings needs none of it.

pub use crate::backoff::Backoff;
pub use crate::broker_url::redact_credentials_in;
pub use crate::error::shown_value;
pub use crate::responder::{respond_fleet, respond_fleet_with};
pub use crate::scope::{DEFAULT_SCOPE, MAX_SCOPE_LEN, SCOPE_VARIABLE, is_valid_scope, scope_rule};
pub use crate::signals::abort_on_panic;
pub use crate::topology::{
    PING_EXCHANGE, Role, monitor_queue_prefix, ping_exchange, service_queue_prefix,
};
pub use crate::transport::{
    Closer, Inbox, Incoming, LinkStats, LinkStatus, MemoryBroker, NAMED_SENDERS, OTHER_SENDERS,
    Publisher, check_ca_pem, connect_each, connect_many,
};

/// A monitor group's link: leadership through the broker, and a channel
/// every member hears.
pub mod group {
    pub use crate::transport::{
        GroupLink, GroupOptions, GroupPublisher, Leadership, group_exchange, join_group,
        leader_queue, member_queue,
    };
}
