//! Loads a fixture through the same validation a client PUT goes through.

use crate::fixture::Fixture;
use crate::handlers::{normalize_location, put_core};
use crate::path::parse_id;
use crate::sim::Sim;
use crate::state::{Kind, ResourceGroup, Subscription, key};
use anyhow::{Context, anyhow};

pub fn load_fixture(sim: &Sim, fixture: &Fixture) -> anyhow::Result<()> {
    let limits = sim.live().limits;
    let mut st = sim.state();
    for s in &fixture.subscriptions {
        let entry = st
            .subscriptions
            .entry(key(&s.id))
            .or_insert_with(|| Subscription {
                id: s.id.clone(),
                display_name: s.display_name.clone().unwrap_or_else(|| s.id.clone()),
                resource_groups: Default::default(),
                registered_features: Default::default(),
            });
        entry
            .registered_features
            .extend(s.registered_features.iter().map(|f| f.to_ascii_lowercase()));
        for g in &s.resource_groups {
            entry.resource_groups.insert(
                key(&g.name),
                ResourceGroup {
                    name: g.name.clone(),
                    location: normalize_location(&g.location),
                    tags: g.tags.clone(),
                    managed_by: g.managed_by.clone(),
                    deleting: false,
                },
            );
        }
    }
    for r in &fixture.resources {
        let p = parse_id(&r.id)
            .ok_or_else(|| anyhow!("fixture resource id {} is not an ARM resource ID", r.id))?;
        let kind = Kind::from_type_key(&p.type_key())
            .filter(|k| p.segs.len() == if *k == Kind::AgentPool { 2 } else { 1 })
            .ok_or_else(|| anyhow!("fixture resource {}: armsim does not serve this type", r.id))?;
        put_core(&mut st, &limits, kind, &p, &r.body)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("fixture resource {}", r.id))?;
    }
    Ok(())
}
