//! Who a service instance is. Below both `topology` (which names its queue
//! after it) and `responder` (which answers as it), so neither imports the other.

/// Who answers: a service name shared by its replicas, and this replica's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub service: String,
    pub instance: String,
}

impl Identity {
    pub fn new(service: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            instance: instance.into(),
        }
    }
}
