//! Parsing of ARM request paths. ARM matches path segments case-insensitively, so every
//! comparison here lower-cases; the client's casing of names is kept for IDs it creates.

/// A resource below a resource group: provider namespace plus `(type, name)` pairs, and
/// possibly a trailing collection type (`.../networkSecurityGroups/x/securityRules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResPath {
    pub sub: String,
    pub rg: String,
    pub ns: String,
    pub segs: Vec<(String, String)>,
    pub collection: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Subscription {
        sub: String,
    },
    ResourceGroups {
        sub: String,
    },
    ResourceGroup {
        sub: String,
        rg: String,
    },
    /// `/subscriptions/{s}[/resourceGroups/{rg}]/providers/{ns}/{type}`
    Collection {
        sub: String,
        rg: Option<String>,
        ns: String,
        rtype: String,
    },
    Resource(ResPath),
    /// `Azure-AsyncOperation` target.
    AsyncOperation {
        sub: String,
        ns: String,
        op_id: String,
    },
    /// `Location` target (`operationResults`), also for resource group deletion.
    OperationResult {
        sub: String,
        op_id: String,
    },
    /// A preview feature's registration state:
    /// `/subscriptions/{s}/providers/Microsoft.Features/providers/{ns}/features/{name}`.
    Feature {
        sub: String,
        ns: String,
        name: String,
    },
    Unknown,
}

pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let low: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let eq = |i: usize, w: &str| low.get(i).map(|s| s == w).unwrap_or(false);
    if !eq(0, "subscriptions") || segs.len() < 2 {
        return Route::Unknown;
    }
    let sub = segs[1].to_string();
    match segs.len() {
        2 => return Route::Subscription { sub },
        3 if eq(2, "resourcegroups") => return Route::ResourceGroups { sub },
        4 if eq(2, "resourcegroups") => {
            return Route::ResourceGroup {
                sub,
                rg: segs[3].to_string(),
            };
        }
        4 if eq(2, "operationresults") => {
            return Route::OperationResult {
                sub,
                op_id: segs[3].to_string(),
            };
        }
        _ => {}
    }
    if eq(2, "providers") {
        // /subscriptions/s/providers/{ns}/{type} or .../{ns}/locations/{loc}/operations/{id}
        if segs.len() == 5 {
            return Route::Collection {
                sub,
                rg: None,
                ns: segs[3].to_string(),
                rtype: segs[4].to_string(),
            };
        }
        if segs.len() == 8 && eq(3, "microsoft.features") && eq(4, "providers") && eq(6, "features")
        {
            return Route::Feature {
                sub,
                ns: segs[5].to_string(),
                name: segs[7].to_string(),
            };
        }
        if segs.len() == 8 && eq(4, "locations") {
            if eq(6, "operations") {
                return Route::AsyncOperation {
                    sub,
                    ns: segs[3].to_string(),
                    op_id: segs[7].to_string(),
                };
            }
            if eq(6, "operationresults") {
                return Route::OperationResult {
                    sub,
                    op_id: segs[7].to_string(),
                };
            }
        }
        return Route::Unknown;
    }
    if eq(2, "resourcegroups") && eq(4, "providers") && segs.len() >= 7 {
        let rg = segs[3].to_string();
        let ns = segs[5].to_string();
        let rest = &segs[6..];
        if rest.len() == 1 {
            return Route::Collection {
                sub,
                rg: Some(rg),
                ns,
                rtype: rest[0].to_string(),
            };
        }
        let mut pairs = Vec::new();
        let mut i = 0;
        while i + 1 < rest.len() {
            pairs.push((rest[i].to_string(), rest[i + 1].to_string()));
            i += 2;
        }
        let collection = if i < rest.len() {
            Some(rest[i].to_string())
        } else {
            None
        };
        return Route::Resource(ResPath {
            sub,
            rg,
            ns,
            segs: pairs,
            collection,
        });
    }
    Route::Unknown
}

impl ResPath {
    /// Lower-cased `ns/type[/childType...]` including the trailing collection, if any.
    pub fn type_key(&self) -> String {
        let mut key = self.ns.to_ascii_lowercase();
        for (t, _) in &self.segs {
            key.push('/');
            key.push_str(&t.to_ascii_lowercase());
        }
        if let Some(c) = &self.collection {
            key.push('/');
            key.push_str(&c.to_ascii_lowercase());
        }
        key
    }

    /// ID of the top-level resource (first pair), in the client's casing.
    pub fn top_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}",
            self.sub,
            self.rg,
            canonical_ns(&self.ns),
            canonical_type(&self.segs[0].0),
            self.segs[0].1
        )
    }
}

/// Canonical casing of the provider namespaces armsim serves.
pub fn canonical_ns(ns: &str) -> String {
    match ns.to_ascii_lowercase().as_str() {
        "microsoft.network" => "Microsoft.Network".into(),
        "microsoft.compute" => "Microsoft.Compute".into(),
        "microsoft.containerservice" => "Microsoft.ContainerService".into(),
        "microsoft.resources" => "Microsoft.Resources".into(),
        _ => ns.to_string(),
    }
}

/// Canonical casing of the resource type segments armsim serves.
pub fn canonical_type(t: &str) -> String {
    let known = [
        "networkSecurityGroups",
        "securityRules",
        "defaultSecurityRules",
        "applicationSecurityGroups",
        "publicIPPrefixes",
        "publicIPAddresses",
        "routeTables",
        "routes",
        "virtualNetworks",
        "subnets",
        "managedClusters",
        "agentPools",
        "virtualMachineScaleSets",
        "virtualMachines",
        "networkInterfaces",
        "ipConfigurations",
        "locations",
        "operations",
        "operationResults",
    ];
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(t))
        .map(|k| k.to_string())
        .unwrap_or_else(|| t.to_string())
}

/// The resource type a request addresses, for counters and fault matching.
pub fn resource_type_of(route: &Route) -> String {
    match route {
        Route::Subscription { .. } => "Microsoft.Resources/subscriptions".into(),
        Route::ResourceGroups { .. } | Route::ResourceGroup { .. } => {
            "Microsoft.Resources/resourceGroups".into()
        }
        Route::Collection { ns, rtype, .. } => {
            format!("{}/{}", canonical_ns(ns), canonical_type(rtype))
        }
        Route::Resource(p) => {
            let mut s = canonical_ns(&p.ns);
            for (t, _) in &p.segs {
                s.push('/');
                s.push_str(&canonical_type(t));
            }
            if let Some(c) = &p.collection {
                s.push('/');
                s.push_str(&canonical_type(c));
            }
            s
        }
        Route::AsyncOperation { ns, .. } => format!("{}/locations/operations", canonical_ns(ns)),
        Route::OperationResult { .. } => "operationResults".into(),
        Route::Feature { .. } => "Microsoft.Features/providers/features".into(),
        Route::Unknown => "unknown".into(),
    }
}

/// Splits an ARM ID into a [`ResPath`], if it names a resource below a resource group.
pub fn parse_id(id: &str) -> Option<ResPath> {
    match parse(id) {
        Route::Resource(p) if p.collection.is_none() => Some(p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_child_resource_case_insensitively() {
        let r = parse(
            "/SUBSCRIPTIONS/s1/resourcegroups/RG/providers/microsoft.network/networkSecurityGroups/n1/securityRules/r1",
        );
        let Route::Resource(p) = r else {
            panic!("not a resource: {r:?}")
        };
        assert_eq!(p.rg, "RG");
        assert_eq!(
            p.type_key(),
            "microsoft.network/networksecuritygroups/securityrules"
        );
        assert_eq!(
            p.top_id(),
            "/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Network/networkSecurityGroups/n1"
        );
    }

    #[test]
    fn parses_collections_and_operations() {
        assert_eq!(
            parse("/subscriptions/s/providers/Microsoft.Network/routeTables"),
            Route::Collection {
                sub: "s".into(),
                rg: None,
                ns: "Microsoft.Network".into(),
                rtype: "routeTables".into()
            }
        );
        assert!(matches!(
            parse(
                "/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operations/abc"
            ),
            Route::AsyncOperation { .. }
        ));
        let Route::Resource(p) = parse(
            "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/v/publicipaddresses",
        ) else {
            panic!()
        };
        assert_eq!(p.collection.as_deref(), Some("publicipaddresses"));
    }
}
