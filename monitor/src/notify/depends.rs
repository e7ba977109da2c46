//! Dependencies (`[services.NAME] depends_on`) as alerts see them: a
//! dependent's alerts are held while a service it depends on is down as a
//! whole, and the parent's own alert names the dependents down with it
//! ("and 10 dependents"), so one outage is one notification. Pure: the
//! caller passes the fleet model's tally.

use std::collections::{BTreeMap, BTreeSet};

use crate::fleet::Tally;

/// `depends_on` by the dependent's lower-cased name, as [`crate::quiet::Quiet`] keeps it.
pub type DependsOn = BTreeMap<String, Vec<String>>;

/// Whether `service` has instances and none of them vouches for it (all
/// DOWN, LEFT or SUSPECT: see `State::vouches_for_dependents`).
fn down(tally: &Tally, service: &str) -> bool {
    tally
        .services
        .iter()
        .any(|(name, count)| name.eq_ignore_ascii_case(service) && count.vouching == 0)
}

/// Whether one of `parents` (what a service depends on, `Quiet::parents_of`)
/// is down: then the service's alerts are held, and go out if it still
/// fails once the parent is back.
pub fn parent_down(parents: &[String], tally: &Tally) -> bool {
    parents.iter().any(|parent| down(tally, parent))
}

/// The services held because `service` is down, by their names in the
/// fleet model, sorted: those that depend on it and are down too, and,
/// through those, theirs. Empty while `service` itself is not down (its
/// dependents' alerts are not held on its account then).
pub fn dependents_down(depends_on: &DependsOn, tally: &Tally, service: &str) -> Vec<String> {
    if depends_on.is_empty() || !down(tally, service) {
        return Vec::new();
    }
    let mut seen = BTreeSet::from([service.to_lowercase()]);
    let mut frontier = vec![service.to_lowercase()];
    let mut found = Vec::new();
    while let Some(parent) = frontier.pop() {
        for (dependent, parents) in depends_on {
            if seen.contains(dependent) || !parents.iter().any(|p| p.eq_ignore_ascii_case(&parent))
            {
                continue;
            }
            let Some((name, _)) = tally
                .services
                .iter()
                .find(|(name, count)| name.eq_ignore_ascii_case(dependent) && count.vouching == 0)
            else {
                continue;
            };
            seen.insert(dependent.clone());
            frontier.push(dependent.clone());
            found.push(name.clone());
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ServiceCount;

    fn tally(services: &[(&str, usize)]) -> Tally {
        let mut tally = Tally::default();
        for &(name, vouching) in services {
            tally.services.insert(
                name.to_owned(),
                ServiceCount {
                    alive: vouching,
                    vouching,
                    all: 1,
                    expected: None,
                },
            );
        }
        tally
    }

    fn depends(pairs: &[(&str, &[&str])]) -> DependsOn {
        pairs
            .iter()
            .map(|(d, ps)| (d.to_lowercase(), ps.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_parent_down_holds_its_dependents_and_names_those_down_with_it() {
        let map = depends(&[("api", &["db"]), ("web", &["api"]), ("batch", &["db"])]);
        let fleet = tally(&[("db", 0), ("api", 0), ("web", 0), ("batch", 1)]);
        let parents = |service: &str| map[&service.to_lowercase()].clone();
        assert!(parent_down(&parents("api"), &fleet));
        assert!(parent_down(&["API".to_owned()], &fleet), "case-insensitive");
        // web is held through api, which is down because of db.
        assert_eq!(dependents_down(&map, &fleet, "db"), ["api", "web"]);
        assert_eq!(dependents_down(&map, &fleet, "api"), ["web"]);
    }

    #[test]
    fn a_parent_that_vouches_names_nobody() {
        let map = depends(&[("api", &["db"])]);
        let fleet = tally(&[("db", 1), ("api", 0)]);
        assert!(!parent_down(&map["api"], &fleet));
        assert!(dependents_down(&map, &fleet, "db").is_empty());
        // A parent the fleet has never seen holds nothing either.
        assert!(!parent_down(&map["api"], &tally(&[("api", 0)])));
    }
}
