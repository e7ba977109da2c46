//! Silences: "hold the alerts for this service (or instance) until then,
//! because ...". A silence stops notifications for what it covers, never
//! detection. They are kept in the history store, so they survive a
//! restart (and a group of monitors sharing a store shares them).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use heartbeat_config::{HistorySettings, is_pattern, pattern_matches};
use orchestrator_lib::wire::is_valid_name;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::history::{self, HistoryError, StoredSilence};

/// The longest silence: a forgotten one must not mute a service for ever.
pub const MAX_SILENCE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest reason kept.
const MAX_REASON: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: String,
    /// A service name or glob pattern (`orders`, `shop-*`).
    pub service: String,
    /// One instance; `null`: every instance and the service as a whole.
    pub instance: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Silence {
    /// Whether it holds alerts about `service` (and `instance`, `None` for
    /// the service as a whole) at `now`.
    pub fn covers(&self, service: &str, instance: Option<&str>, now: DateTime<Utc>) -> bool {
        self.starts_at <= now
            && now < self.ends_at
            && pattern_matches(&self.service, service)
            && match (&self.instance, instance) {
                (None, _) => true,
                (Some(ours), Some(theirs)) => ours == theirs,
                (Some(_), None) => false,
            }
    }

    fn stored(&self) -> StoredSilence {
        StoredSilence {
            id: self.id.clone(),
            service: self.service.clone(),
            instance: self.instance.clone(),
            starts_at_ms: self.starts_at.timestamp_millis(),
            ends_at_ms: self.ends_at.timestamp_millis(),
            reason: self.reason.clone(),
            created_at_ms: self.created_at.timestamp_millis(),
        }
    }

    fn from_stored(s: StoredSilence) -> Self {
        let at = |ms| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        Self {
            id: s.id,
            service: s.service,
            instance: s.instance,
            starts_at: at(s.starts_at_ms),
            ends_at: at(s.ends_at_ms),
            reason: s.reason,
            created_at: at(s.created_at_ms),
        }
    }
}

/// What `POST /api/v1/silences` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub service: String,
    #[serde(default)]
    pub instance: Option<String>,
    /// How long, from now: "1h", "30m".
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    pub reason: String,
}

impl NewSilence {
    /// The silence this asks for, from `now`, or why it cannot be.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Silence, String> {
        if !is_pattern(&self.service) {
            return Err(
                "service must be a service name or a glob pattern (letters, digits, '-', '_', '.', '*', '?')"
                    .into(),
            );
        }
        if let Some(instance) = &self.instance
            && !is_valid_name(instance)
        {
            return Err(
                "instance must be an instance name (letters, digits, '-', '_', '.')".into(),
            );
        }
        if self.for_ < Duration::from_secs(1) || self.for_ > MAX_SILENCE {
            return Err("for must be between 1s and 30d, e.g. \"1h\"".into());
        }
        let reason: String = self
            .reason
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect();
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err("reason must say why, e.g. \"deploying 2.4\"".into());
        }
        let for_ = chrono::Duration::from_std(self.for_).map_err(|e| e.to_string())?;
        Ok(Silence {
            id: new_id(),
            service: self.service,
            instance: self.instance,
            starts_at: now,
            ends_at: now + for_,
            reason,
            created_at: now,
        })
    }
}

/// 12 hex digits: short enough to type, random enough never to collide.
fn new_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

/// The silences in force, shared by the API, the alerts and the views.
/// Writes go to the store first: a silence the API acknowledged is kept.
#[derive(Clone, Default)]
pub struct Silences {
    inner: Arc<RwLock<Vec<Silence>>>,
    store: Option<HistorySettings>,
}

impl std::fmt::Debug for Silences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Silences").finish_non_exhaustive()
    }
}

impl Silences {
    /// Kept in `store` when there is one; in memory only otherwise.
    pub fn new(store: Option<HistorySettings>) -> Self {
        Self {
            inner: Arc::default(),
            store,
        }
    }

    pub fn persistent(&self) -> bool {
        self.store.is_some()
    }

    /// Read the silences still in force from the store (at start, and to
    /// pick up those another monitor sharing the store added).
    pub async fn load(&self, now: DateTime<Utc>) -> Result<usize, HistoryError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let rows = history::query(store, move |s| s.silences(now.timestamp_millis())).await?;
        let loaded: Vec<Silence> = rows.into_iter().map(Silence::from_stored).collect();
        let count = loaded.len();
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(count)
    }

    /// Keep `silence`: in the store first, then in force.
    pub async fn add(&self, silence: Silence) -> Result<Silence, HistoryError> {
        if let Some(store) = &self.store {
            let stored = silence.stored();
            history::query(store, move |s| s.save_silence(&stored)).await?;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.retain(|s| s.id != silence.id);
        inner.push(silence.clone());
        Ok(silence)
    }

    /// End a silence now. `None` when no silence in force has that id.
    pub async fn expire(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, HistoryError> {
        let Some(mut silence) = self.active(now).into_iter().find(|s| s.id == id) else {
            return Ok(None);
        };
        silence.ends_at = now;
        if let Some(store) = &self.store {
            let stored = silence.stored();
            history::query(store, move |s| s.save_silence(&stored)).await?;
        }
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id != id);
        Ok(Some(silence))
    }

    /// Silences that have not ended by `now`, soonest end first.
    pub fn active(&self, now: DateTime<Utc>) -> Vec<Silence> {
        let mut list: Vec<Silence> = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.ends_at > now)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.ends_at.cmp(&b.ends_at).then(a.id.cmp(&b.id)));
        list
    }

    /// The silence holding alerts about this subject at `now` that ends
    /// last, if any.
    pub fn covering(
        &self,
        service: &str,
        instance: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Silence> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.covers(service, instance, now))
            .max_by_key(|s| s.ends_at)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(service: &str, instance: Option<&str>, for_: u64) -> NewSilence {
        NewSilence {
            service: service.into(),
            instance: instance.map(Into::into),
            for_: Duration::from_secs(for_),
            reason: "deploy".into(),
        }
    }

    #[test]
    fn a_silence_covers_its_service_or_instance_until_it_ends() {
        let now = Utc::now();
        let s = new("shop-*", None, 60).validate(now).unwrap();
        assert!(s.covers("shop-1", Some("a"), now));
        assert!(s.covers("shop-1", None, now), "the service as a whole too");
        assert!(!s.covers("orders", Some("a"), now));
        assert!(!s.covers("shop-1", Some("a"), now + chrono::Duration::seconds(60)));
        let one = new("orders", Some("o-1"), 60).validate(now).unwrap();
        assert!(one.covers("orders", Some("o-1"), now));
        assert!(!one.covers("orders", Some("o-2"), now));
        assert!(
            !one.covers("orders", None, now),
            "one instance is not the service"
        );
    }

    #[test]
    fn bad_requests_say_what_to_fix() {
        let now = Utc::now();
        assert!(
            new("bad name", None, 60)
                .validate(now)
                .unwrap_err()
                .contains("service")
        );
        assert!(
            new("a", Some("x/y"), 60)
                .validate(now)
                .unwrap_err()
                .contains("instance")
        );
        assert!(new("a", None, 0).validate(now).unwrap_err().contains("for"));
        assert!(
            new("a", None, 90 * 24 * 3600)
                .validate(now)
                .unwrap_err()
                .contains("30d")
        );
        let mut blank = new("a", None, 60);
        blank.reason = " \u{1b} \t ".into();
        assert!(blank.validate(now).unwrap_err().contains("reason"));
    }

    #[tokio::test]
    async fn silences_are_kept_in_the_store_and_come_back() {
        let dir = std::env::temp_dir().join(format!("hb-silences-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = HistorySettings {
            path: dir.join("h.db").display().to_string(),
            url: String::new(),
            retention: Duration::from_secs(86400),
            timeout: Duration::from_secs(5),
        };
        let now = Utc::now();
        let silences = Silences::new(Some(settings.clone()));
        let kept = silences
            .add(new("orders", None, 3600).validate(now).unwrap())
            .await
            .unwrap();
        let gone = silences
            .add(new("pay", None, 3600).validate(now).unwrap())
            .await
            .unwrap();
        assert!(silences.expire(&gone.id, now).await.unwrap().is_some());
        assert!(silences.expire("nope", now).await.unwrap().is_none());
        // A new process: only the one still in force comes back.
        let again = Silences::new(Some(settings));
        assert_eq!(again.load(now).await.unwrap(), 1);
        let active = again.active(now);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].id, kept.id);
        assert_eq!(active[0].reason, "deploy");
        assert!(again.covering("orders", Some("o-1"), now).is_some());
        assert!(again.covering("pay", Some("p-1"), now).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
