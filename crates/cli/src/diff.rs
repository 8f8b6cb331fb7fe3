//! `kubectl poolnet diff NAME`: the exact changes poolnet would make in Azure for an Observe
//! NodePoolNetwork (its `status.pendingChanges`), rendered like `terraform plan`: `+` added,
//! `~` changed, `-` removed, grouped by the Azure resource they are written to.

use std::fmt::Write as _;

use kube::ResourceExt;
use poolnet_api::v1alpha1::{
    ChangeAction, ChangeTarget, NodePoolNetwork, PendingChange, ReconcilePolicy,
};

use crate::status::leaf;

/// What `diff` found: the text and whether anything would change (`kubectl diff` exits 1
/// then, like `diff`).
pub struct Diff {
    pub text: String,
    pub changes: usize,
}

fn resource_label(c: &PendingChange) -> String {
    match c.target {
        ChangeTarget::SecurityRule => format!("NSG {}", leaf(&c.resource_id)),
        ChangeTarget::Route => format!("route table {}", leaf(&c.resource_id)),
        ChangeTarget::AgentPool => format!("agent pool {}", leaf(&c.resource_id)),
        ChangeTarget::ApplicationSecurityGroup => "application security groups".to_string(),
        ChangeTarget::PublicIPPrefix => "public IP prefixes".to_string(),
    }
}

/// A value as shown: quoted, ARM IDs by their names (`-o json` has them whole).
fn quoted(v: Option<&str>) -> String {
    match v {
        Some(v) => {
            let shown: Vec<&str> = v
                .split(',')
                .map(|part| {
                    if part.to_ascii_lowercase().starts_with("/subscriptions/") {
                        leaf(part)
                    } else {
                        part
                    }
                })
                .collect();
            format!("{:?}", shown.join(","))
        }
        None => "(none)".to_string(),
    }
}

/// The pending changes of `npn`, as text.
pub fn render(npn: &NodePoolNetwork) -> Diff {
    render_titled(
        npn,
        &format!("NodePoolNetwork {} (Observe)", npn.name_any()),
    )
}

/// [`render`] under another title (a manifest not applied yet), with the problems poolnet
/// would report listed after the changes.
pub fn render_titled(npn: &NodePoolNetwork, title: &str) -> Diff {
    let name = npn.name_any();
    let status = npn.status.clone().unwrap_or_default();
    let mut out = String::new();
    if npn.spec.reconcile_policy != ReconcilePolicy::Observe {
        let _ = writeln!(
            out,
            "NodePoolNetwork {name} is {:?}: poolnet applies its changes itself, so none are pending. Set reconcilePolicy: Observe to preview changes without making them.",
            npn.spec.reconcile_policy
        );
        return Diff {
            text: out,
            changes: 0,
        };
    }
    let current = status.observed_generation.is_some()
        && status.observed_generation == npn.metadata.generation;
    if !current {
        let _ = writeln!(
            out,
            "NodePoolNetwork {name}: poolnet has not observed generation {} yet; what follows may be out of date.",
            npn.metadata.generation.unwrap_or(0)
        );
    }
    let changes = &status.pending_changes;
    if changes.is_empty() {
        let _ = writeln!(out, "{title}: no changes. Azure matches the spec.");
        problems(&mut out, &status.conditions);
        return Diff {
            text: out,
            changes: 0,
        };
    }
    let count = |a: ChangeAction| changes.iter().filter(|c| c.action == a).count();
    let _ = writeln!(
        out,
        "{title}: poolnet would add {}, change {}, remove {}.",
        count(ChangeAction::Add),
        count(ChangeAction::Change),
        count(ChangeAction::Remove)
    );
    let mut last_resource = String::new();
    for c in changes {
        let label = resource_label(c);
        if label != last_resource {
            let _ = writeln!(out, "\n{label}  ({})", c.resource_id);
            last_resource = label;
        }
        let (sign, what) = match c.action {
            ChangeAction::Add => ('+', "add"),
            ChangeAction::Change => ('~', "change"),
            ChangeAction::Remove => ('-', "remove"),
        };
        let kind = match c.target {
            ChangeTarget::SecurityRule => "rule",
            ChangeTarget::Route => "route",
            ChangeTarget::AgentPool => "pool",
            ChangeTarget::ApplicationSecurityGroup => "application security group",
            ChangeTarget::PublicIPPrefix => "public IP prefix",
        };
        let _ = writeln!(out, "  {sign} {kind} {} ({what})", c.name);
        let width = c.fields.iter().map(|f| f.field.len()).max().unwrap_or(0);
        for f in &c.fields {
            let value = match c.action {
                ChangeAction::Add => quoted(f.new.as_deref()),
                ChangeAction::Remove => quoted(f.old.as_deref()),
                ChangeAction::Change => format!(
                    "{} -> {}",
                    quoted(f.old.as_deref()),
                    quoted(f.new.as_deref())
                ),
            };
            let _ = writeln!(out, "      {:<width$}  {value}", f.field);
        }
    }
    problems(&mut out, &status.conditions);
    Diff {
        text: out,
        changes: changes.len(),
    }
}

/// Failing conditions other than "would change" (Observe), e.g. a full priority band or a
/// node pool to recreate: what applying would not fix.
fn problems(
    out: &mut String,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) {
    let failing: Vec<_> = conditions
        .iter()
        .filter(|c| {
            c.status == "False"
                // What applying does (Observe's "would"), or will do (create what is missing).
                && c.reason != poolnet_api::v1alpha1::conditions::reason::OBSERVE_ONLY
                && c.reason != poolnet_api::v1alpha1::conditions::reason::PROGRESSING
                && !(c.reason == poolnet_api::v1alpha1::conditions::reason::NOT_FOUND
                    && c.message.contains("poolnet would create it"))
                && !matches!(c.type_.as_str(), "Ready" | "Reconciling" | "Stalled")
        })
        .collect();
    if failing.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nProblems poolnet reports (not fixed by applying):");
    for c in failing {
        let _ = writeln!(out, "  {} {}: {}", c.type_, c.reason, c.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::v1alpha1::FieldChange;

    const GAME: &str = include_str!("../../../config/samples/game-pool.yaml");

    fn observe(changes: Vec<PendingChange>) -> NodePoolNetwork {
        let mut npn: NodePoolNetwork = serde_yaml::from_str(GAME).expect("sample");
        npn.spec.reconcile_policy = ReconcilePolicy::Observe;
        npn.metadata.generation = Some(1);
        npn.status = Some(poolnet_api::v1alpha1::NodePoolNetworkStatus {
            observed_generation: Some(1),
            pending_changes: changes,
            ..Default::default()
        });
        npn
    }

    fn f(field: &str, old: Option<&str>, new: Option<&str>) -> FieldChange {
        FieldChange {
            field: field.into(),
            old: old.map(String::from),
            new: new.map(String::from),
        }
    }

    #[test]
    fn renders_like_a_plan() {
        let nsg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-a";
        let pool = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";
        let d = render(&observe(vec![
            PendingChange {
                resource_id: nsg.into(),
                target: ChangeTarget::SecurityRule,
                name: "poolnet-1-game-tcp-1".into(),
                action: ChangeAction::Add,
                fields: vec![
                    f("priority", None, Some("200")),
                    f("destinationPortRanges", None, Some("80,443")),
                ],
            },
            PendingChange {
                resource_id: nsg.into(),
                target: ChangeTarget::SecurityRule,
                name: "poolnet-1-game-udp-2".into(),
                action: ChangeAction::Remove,
                fields: vec![f("destinationPortRanges", Some("53"), None)],
            },
            PendingChange {
                resource_id: pool.into(),
                target: ChangeTarget::AgentPool,
                name: "game".into(),
                action: ChangeAction::Change,
                fields: vec![f(
                    "networkProfile.allowedHostPorts",
                    None,
                    Some("80/tcp,443/tcp"),
                )],
            },
        ]));
        assert_eq!(d.changes, 3);
        let want = format!(
            "NodePoolNetwork game (Observe): poolnet would add 1, change 1, remove 1.\n\
             \n\
             NSG nsg-a  ({nsg})\n  \
               + rule poolnet-1-game-tcp-1 (add)\n      \
                   priority               \"200\"\n      \
                   destinationPortRanges  \"80,443\"\n  \
               - rule poolnet-1-game-udp-2 (remove)\n      \
                   destinationPortRanges  \"53\"\n\
             \n\
             agent pool game  ({pool})\n  \
               ~ pool game (change)\n      \
                   networkProfile.allowedHostPorts  (none) -> \"80/tcp,443/tcp\"\n"
        );
        assert_eq!(d.text, want, "\n{}", d.text);
    }

    #[test]
    fn arm_ids_show_by_name() {
        assert_eq!(
            quoted(Some(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg-a,/SUBSCRIPTIONS/s/x/asg-b"
            )),
            "\"asg-a,asg-b\""
        );
        assert_eq!(quoted(Some("80/tcp,443/tcp")), "\"80/tcp,443/tcp\"");
        assert_eq!(quoted(None), "(none)");
    }

    #[test]
    fn nothing_pending_and_managed_objects_say_why() {
        let d = render(&observe(Vec::new()));
        assert_eq!(d.changes, 0);
        assert!(
            d.text.contains("no changes. Azure matches the spec"),
            "{}",
            d.text
        );
        let mut managed = observe(Vec::new());
        managed.spec.reconcile_policy = ReconcilePolicy::Manage;
        assert!(
            render(&managed)
                .text
                .contains("is Manage: poolnet applies its changes itself")
        );
        let mut stale = observe(Vec::new());
        stale.metadata.generation = Some(2);
        assert!(
            render(&stale)
                .text
                .contains("has not observed generation 2 yet")
        );
    }
}
