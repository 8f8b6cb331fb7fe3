//! The scope allow-list: the subscriptions and resource groups poolnet may write in. Whoever
//! may create a NodePoolNetwork may otherwise aim the operator's Azure identity at any NSG,
//! route table or agent pool that identity reaches; with a list, every ARM ID in a spec must
//! lie inside it. The validating webhook refuses an object outside it (naming the field), and
//! the controller refuses again (a race or a webhook outage lets one through).

use std::fmt;

use crate::armid::ResourceId;
use crate::error::{FieldError, FieldErrors};
use crate::v1alpha1::NodePoolNetworkSpec;

/// One entry: a whole subscription, or one resource group of it (compared case-insensitively,
/// like ARM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedScope {
    subscription: String,
    resource_group: Option<String>,
}

impl AllowedScope {
    /// `/subscriptions/<id>` or `/subscriptions/<id>/resourceGroups/<name>`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parts: Vec<&str> = raw.trim().trim_end_matches('/').split('/').collect();
        let bad = || {
            format!(
                "allowed scope {raw:?} must be /subscriptions/<subscription-id> or /subscriptions/<subscription-id>/resourceGroups/<resource-group>"
            )
        };
        match parts.as_slice() {
            ["", s, sub] if s.eq_ignore_ascii_case("subscriptions") && !sub.is_empty() => {
                Ok(Self {
                    subscription: sub.to_ascii_lowercase(),
                    resource_group: None,
                })
            }
            ["", s, sub, g, rg]
                if s.eq_ignore_ascii_case("subscriptions")
                    && g.eq_ignore_ascii_case("resourceGroups")
                    && !sub.is_empty()
                    && !rg.is_empty() =>
            {
                Ok(Self {
                    subscription: sub.to_ascii_lowercase(),
                    resource_group: Some(rg.to_ascii_lowercase()),
                })
            }
            _ => Err(bad()),
        }
    }

    fn contains(&self, subscription: &str, resource_group: &str) -> bool {
        self.subscription.eq_ignore_ascii_case(subscription)
            && self
                .resource_group
                .as_deref()
                .is_none_or(|rg| rg.eq_ignore_ascii_case(resource_group))
    }
}

impl fmt::Display for AllowedScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/subscriptions/{}", self.subscription)?;
        if let Some(rg) = &self.resource_group {
            write!(f, "/resourceGroups/{rg}")?;
        }
        Ok(())
    }
}

/// The whole list; empty means no restriction (the identity's own RBAC is the only bound).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedScopes(Vec<AllowedScope>);

impl AllowedScopes {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        raw.iter()
            .map(|r| r.as_ref())
            .filter(|r| !r.trim().is_empty())
            .map(AllowedScope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_unrestricted(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether ARM resource `id` lies inside the list (an ID that does not parse is judged by
    /// the other validators, not here).
    pub fn permits(&self, id: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        match ResourceId::parse(id) {
            Ok(id) => self
                .0
                .iter()
                .any(|s| s.contains(&id.subscription, &id.resource_group)),
            Err(_) => true,
        }
    }

    /// Every ARM ID of `spec` outside the list, as field errors; the managed prefix counts as
    /// the resource group it is created in.
    pub fn check(&self, spec: &NodePoolNetworkSpec) -> FieldErrors {
        let mut errs = FieldErrors::new();
        if self.0.is_empty() {
            return errs;
        }
        let allowed = self
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut check = |path: String, id: &str| {
            if !self.permits(id) {
                errs.push(FieldError::new(
                    path,
                    id,
                    "outside the subscriptions and resource groups this poolnet may write in",
                    format!(
                        "an ID inside {allowed} (the operator's --allowed-scope list; ask the platform team to extend it)"
                    ),
                ));
            }
        };
        check(
            "spec.nodePool.agentPoolId".into(),
            &spec.node_pool.agent_pool_id,
        );
        if let Some(prefix) = spec.node_public_ip.as_ref().and_then(|n| n.prefix.as_ref()) {
            if let Some(id) = &prefix.existing_id {
                check("spec.nodePublicIP.prefix.existingId".into(), id);
            }
            if let (Some(m), Ok(pool)) = (
                &prefix.managed,
                ResourceId::parse(&spec.node_pool.agent_pool_id),
            ) {
                let target = format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/publicIPPrefixes/{}",
                    pool.subscription, m.resource_group, m.name
                );
                check(
                    "spec.nodePublicIP.prefix.managed.resourceGroup".into(),
                    &target,
                );
            }
        }
        for (i, id) in spec
            .application_security_groups
            .iter()
            .flat_map(|a| a.custom_ids.iter())
            .enumerate()
        {
            check(format!("spec.applicationSecurityGroups.customIds[{i}]"), id);
        }
        for (i, t) in spec.network_security_groups.iter().enumerate() {
            check(format!("spec.networkSecurityGroups[{i}].id"), &t.id);
        }
        if let Some(rt) = &spec.route_table {
            check("spec.routeTable.id".into(), &rt.id);
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-1111-2222-3333-444444444444";

    fn spec(nsg_rg: &str) -> NodePoolNetworkSpec {
        serde_yaml::from_str(&format!(
            "nodePool: {{agentPoolId: /subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game}}\nnetworkSecurityGroups:\n  - id: /subscriptions/{SUB}/resourceGroups/{nsg_rg}/providers/Microsoft.Network/networkSecurityGroups/nsg\n"
        ))
        .unwrap()
    }

    #[test]
    fn parses_subscriptions_and_resource_groups_and_refuses_the_rest() {
        assert!(AllowedScopes::parse(&[format!("/subscriptions/{SUB}")]).is_ok());
        assert!(
            AllowedScopes::parse(&[format!("/SUBSCRIPTIONS/{SUB}/resourcegroups/RG/")]).is_ok()
        );
        for bad in [
            "subscriptions/x",
            "/subscriptions/",
            "/subscriptions/x/rg/y",
            "/x",
        ] {
            assert!(AllowedScopes::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(AllowedScopes::parse::<&str>(&[]).unwrap().is_unrestricted());
    }

    #[test]
    fn every_id_outside_the_list_is_named() {
        let scopes =
            AllowedScopes::parse(&[format!("/subscriptions/{SUB}/resourceGroups/RG-AKS")]).unwrap();
        assert!(scopes.check(&spec("rg-aks")).is_empty());
        let errs = scopes.check(&spec("rg-other-team"));
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.networkSecurityGroups[0].id"]);
        assert!(errs.to_string().contains("--allowed-scope"), "{errs}");
        let whole = AllowedScopes::parse(&[format!("/subscriptions/{SUB}")]).unwrap();
        assert!(whole.check(&spec("rg-other-team")).is_empty());
        let other =
            AllowedScopes::parse(&["/subscriptions/ffffffff-1111-2222-3333-444444444444"]).unwrap();
        assert_eq!(other.check(&spec("rg-aks")).len(), 2, "pool and NSG");
        assert!(AllowedScopes::default().check(&spec("anything")).is_empty());
    }
}
