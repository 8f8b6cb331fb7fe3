//! The object's record of what it wrote into shared Azure resources (`status.owned`,
//! docs/ownership.md). A part records what it is about to write with [`Ledger::intend`],
//! which writes the status **before** the part writes Azure, and settles the record after a
//! confirmed write with [`Ledger::settle`] (written with the reconcile's final status).
//!
//! Objects written before the record existed have none: the first reconcile seeds it from the
//! status fields that reported the same things ([`seed`]), so an upgrade strands nothing.

use std::sync::Mutex;

use poolnet_api::v1alpha1::{NodePoolNetwork, NodePoolNetworkStatus, Owned, OwnedEntries};

use super::super::Context;
use super::{Error, write_status};

/// Which list of the record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entries {
    Rules,
    Routes,
}

fn list(owned: &mut Owned, which: Entries) -> &mut Vec<OwnedEntries> {
    match which {
        Entries::Rules => &mut owned.security_rules,
        Entries::Routes => &mut owned.routes,
    }
}

/// One reconcile's view of the record.
pub(crate) struct Ledger {
    owned: Mutex<Owned>,
    /// The status as last written by this reconcile (the one it started from, at first):
    /// an intent is written as this plus the grown record.
    written: Mutex<NodePoolNetworkStatus>,
}

impl Ledger {
    pub fn new(previous: &NodePoolNetworkStatus) -> Self {
        Self {
            owned: Mutex::new(previous.owned.clone().unwrap_or_else(|| seed(previous))),
            written: Mutex::new(previous.clone()),
        }
    }

    fn lock_owned(&self) -> std::sync::MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record as it stands.
    pub fn owned(&self) -> Owned {
        self.lock_owned().clone()
    }

    /// Names recorded in resource `id`.
    pub fn names(&self, which: Entries, id: &str) -> Vec<String> {
        Owned::names_in(list(&mut self.lock_owned(), which), id).to_vec()
    }

    /// Resources recorded in `which`.
    /// The `changes` to resource `id` that are this object's: entries it wants (`wanted`) or
    /// records; the other objects' are theirs to report.
    pub fn own_changes(
        &self,
        which: Entries,
        id: &str,
        wanted: &[String],
        changes: Vec<poolnet_api::v1alpha1::PendingChange>,
    ) -> impl Iterator<Item = poolnet_api::v1alpha1::PendingChange> {
        let recorded = self.names(which, id);
        let wanted = wanted.to_vec();
        changes.into_iter().filter(move |c| {
            wanted
                .iter()
                .chain(&recorded)
                .any(|w| w.eq_ignore_ascii_case(&c.name))
        })
    }

    pub fn ids(&self, which: Entries) -> Vec<String> {
        Owned::ids(list(&mut self.lock_owned(), which))
            .map(String::from)
            .collect()
    }

    /// Record `names` in `id` before writing them. When that adds anything, the status is
    /// written first; an error means nothing may be written to `id`.
    pub async fn intend(
        &self,
        ctx: &Context,
        npn: &NodePoolNetwork,
        which: Entries,
        id: &str,
        names: impl IntoIterator<Item = String>,
    ) -> Result<(), Error> {
        let mut grown = self.owned();
        if !Owned::record(list(&mut grown, which), id, names) {
            return Ok(());
        }
        self.write(ctx, npn, grown).await
    }

    /// Record the managed ASG or prefix poolnet just created (`set`) or deleted.
    pub async fn record_created(
        &self,
        ctx: &Context,
        npn: &NodePoolNetwork,
        set: impl FnOnce(&mut Owned),
    ) -> Result<(), Error> {
        let mut grown = self.owned();
        set(&mut grown);
        if grown == self.owned() {
            return Ok(());
        }
        self.write(ctx, npn, grown).await
    }

    async fn write(&self, ctx: &Context, npn: &NodePoolNetwork, owned: Owned) -> Result<(), Error> {
        let status = {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            NodePoolNetworkStatus {
                owned: Some(owned.clone()),
                ..written.clone()
            }
        };
        write_status(ctx, npn, &status).await?;
        *self.lock_owned() = owned;
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = status;
        Ok(())
    }

    /// After a confirmed write (or a 404): what `id` holds of this object is `names`.
    pub fn settle(&self, which: Entries, id: &str, names: impl IntoIterator<Item = String>) {
        Owned::settle(list(&mut self.lock_owned(), which), id, names);
    }

    /// Change the record in memory (written with the final status).
    pub fn update(&self, f: impl FnOnce(&mut Owned)) {
        f(&mut self.lock_owned());
    }

    /// The status last written by this reconcile.
    pub fn written(&self) -> NodePoolNetworkStatus {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The record an object written before `status.owned` existed would have: what its status
/// reported as its rules, routes, managed ASG and managed prefix.
pub(crate) fn seed(previous: &NodePoolNetworkStatus) -> Owned {
    let mut owned = Owned::default();
    for g in &previous.security_groups {
        Owned::record(
            &mut owned.security_rules,
            &g.id,
            g.rules.iter().map(|r| r.name.clone()),
        );
    }
    if let Some(rt) = &previous.route_table {
        Owned::record(&mut owned.routes, &rt.id, rt.owned_routes.iter().cloned());
    }
    owned.application_security_group = previous
        .application_security_groups
        .iter()
        .find(|a| a.managed)
        .map(|a| a.id.clone());
    owned.public_ip_prefix = previous
        .public_ip_prefix
        .as_ref()
        .filter(|p| p.managed)
        .map(|p| p.id.clone());
    owned
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::v1alpha1::{AsgStatus, NsgStatus, RouteTableStatus, RuleStatus};

    #[test]
    fn an_object_from_before_the_record_is_seeded_from_its_status() {
        let previous = NodePoolNetworkStatus {
            security_groups: vec![NsgStatus {
                id: "/nsg".into(),
                rules: vec![RuleStatus {
                    name: "poolnet-abc-game-tcp-1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            route_table: Some(RouteTableStatus {
                id: "/rt".into(),
                owned_routes: vec!["poolnet-default".into()],
                ..Default::default()
            }),
            application_security_groups: vec![
                AsgStatus {
                    id: "/asg/custom".into(),
                    managed: false,
                },
                AsgStatus {
                    id: "/asg/poolnet-game".into(),
                    managed: true,
                },
            ],
            ..Default::default()
        };
        let owned = seed(&previous);
        assert_eq!(
            Owned::names_in(&owned.security_rules, "/NSG"),
            ["poolnet-abc-game-tcp-1"]
        );
        assert_eq!(Owned::names_in(&owned.routes, "/rt"), ["poolnet-default"]);
        assert_eq!(
            owned.application_security_group.as_deref(),
            Some("/asg/poolnet-game")
        );
        assert_eq!(owned.public_ip_prefix, None);
        let ledger = Ledger::new(&previous);
        assert_eq!(ledger.owned(), owned);
        let recorded = NodePoolNetworkStatus {
            owned: Some(Owned::default()),
            ..previous
        };
        assert_eq!(
            Ledger::new(&recorded).owned(),
            Owned::default(),
            "a record, even empty, is never re-seeded"
        );
    }
}
