//! Network security groups: rule validation (priorities, directions, ports, addresses, ASGs),
//! Azure's per-NSG limits, and the six default rules Azure adds to every NSG.

use super::{Cx, check_ref, resource_guid};
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::state::{Kind, Resource, State};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

const RULE_TYPE: &str = "Microsoft.Network/networkSecurityGroups/securityRules";
const DEFAULT_RULE_TYPE: &str = "Microsoft.Network/networkSecurityGroups/defaultSecurityRules";

pub fn build(st: &State, cx: &Cx, existing: Option<&Resource>, req: &Obj) -> CloudResult<Obj> {
    let p = json::props(req)?;
    let mut rules = Vec::new();
    for raw in json::opt_array(&p, "securityRules", "networkSecurityGroup")? {
        rules.push(canonical_rule(st, cx, raw)?);
    }
    check_rule_set(cx, &rules)?;
    let mut out = Obj::new();
    out.insert("provisioningState".into(), json!("Succeeded"));
    out.insert("resourceGuid".into(), json!(resource_guid(existing)));
    out.insert(
        "flushConnection".into(),
        json!(json::opt_bool(&p, "flushConnection", "networkSecurityGroup")?.unwrap_or(false)),
    );
    out.insert("securityRules".into(), Value::Array(rules));
    out.insert("defaultSecurityRules".into(), default_rules(cx.id));
    Ok(out)
}

/// Validates one rule (from an NSG body or a `securityRules/{name}` PUT) and returns it as
/// Azure returns it: every list present, `provisioningState`, full ID and type.
pub fn canonical_rule(st: &State, cx: &Cx, raw: &Value) -> CloudResult<Value> {
    let r = json::as_obj(raw, "a security rule")?;
    let name = json::opt_str(r, "name", "securityRule")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CloudError::invalid_format("Security rule name is missing."))?;
    let rule_id = format!("{}/securityRules/{name}", cx.id);
    let what = format!("security rule {name}");
    let p = json::props(r)?;

    let protocol = json::opt_str(&p, "protocol", &what)?.ok_or_else(|| {
        CloudError::bad_request(
            "SecurityRuleParameterMissing",
            format!("Security rule {rule_id} is missing required property 'protocol'."),
        )
    })?;
    let protocol = json::canonical_enum(
        protocol,
        &["Tcp", "Udp", "Icmp", "Esp", "Ah", "*"],
        "protocol",
        &what,
    )?;
    let access = json::opt_str(&p, "access", &what)?.ok_or_else(|| {
        CloudError::bad_request(
            "SecurityRuleParameterMissing",
            format!("Security rule {rule_id} is missing required property 'access'."),
        )
    })?;
    let access = json::canonical_enum(access, &["Allow", "Deny"], "access", &what)?;
    let direction = json::opt_str(&p, "direction", &what)?.ok_or_else(|| {
        CloudError::bad_request(
            "SecurityRuleParameterMissing",
            format!("Security rule {rule_id} is missing required property 'direction'."),
        )
    })?;
    let direction = json::canonical_enum(direction, &["Inbound", "Outbound"], "direction", &what)?;
    let priority = json::opt_i64(&p, "priority", &what)?.ok_or_else(|| {
        CloudError::bad_request(
            "SecurityRuleInvalidPriority",
            format!("Security rule {rule_id} has invalid Priority. Value provided: null Allowed range 100-4096."),
        )
    })?;
    if !(100..=4096).contains(&priority) {
        return Err(CloudError::bad_request(
            "SecurityRuleInvalidPriority",
            format!(
                "Security rule has invalid Priority. Value provided: {priority} Allowed range 100-4096."
            ),
        ));
    }

    let mut props = Obj::new();
    props.insert("provisioningState".into(), json!("Succeeded"));
    if let Some(d) = json::opt_str(&p, "description", &what)? {
        props.insert("description".into(), json!(d));
    }
    props.insert("protocol".into(), json!(protocol));

    for side in ["source", "destination"] {
        let single_key = format!("{side}PortRange");
        let list_key = format!("{side}PortRanges");
        let single = json::opt_str(&p, &single_key, &what)?;
        let list = json::string_list(&p, &list_key, &what)?;
        if single.is_none() && list.is_empty() {
            return Err(CloudError::bad_request(
                "SecurityRuleParameterMissing",
                format!("Security rule {rule_id} must specify {single_key} or {list_key}."),
            ));
        }
        if single.is_some() && !list.is_empty() {
            return Err(CloudError::bad_request(
                "SecurityRuleParameterContainsUnsupportedValue",
                format!("Security rule {rule_id} cannot specify both {single_key} and {list_key}."),
            ));
        }
        for range in single
            .iter()
            .copied()
            .chain(list.iter().map(String::as_str))
        {
            check_port_range(range)?;
        }
        if let Some(s) = single {
            props.insert(single_key, json!(s));
        }
    }

    for side in ["source", "destination"] {
        let single_key = format!("{side}AddressPrefix");
        let list_key = format!("{side}AddressPrefixes");
        let asg_key = format!("{side}ApplicationSecurityGroups");
        let single = json::opt_str(&p, &single_key, &what)?;
        let list = json::string_list(&p, &list_key, &what)?;
        let asgs = json::id_list(&p, &asg_key, &what)?;
        let given = usize::from(single.is_some())
            + usize::from(!list.is_empty())
            + usize::from(!asgs.is_empty());
        if given == 0 {
            return Err(CloudError::bad_request(
                "SecurityRuleParameterMissing",
                format!(
                    "Security rule {rule_id} must specify one of {single_key}, {list_key} or {asg_key}."
                ),
            ));
        }
        if given > 1 {
            return Err(CloudError::bad_request(
                "SecurityRuleParameterContainsUnsupportedValue",
                format!(
                    "Security rule {rule_id} can specify only one of {single_key}, {list_key} and {asg_key}."
                ),
            ));
        }
        for prefix in single
            .iter()
            .copied()
            .chain(list.iter().map(String::as_str))
        {
            if !valid_address_prefix(prefix) {
                return Err(CloudError::bad_request(
                    "SecurityRuleInvalidAddressPrefix",
                    format!(
                        "Security rule {rule_id} has invalid Address prefix. Value provided: {prefix}"
                    ),
                ));
            }
        }
        if asgs.len() > cx.limits.asgs_per_rule_side {
            return Err(CloudError::bad_request(
                "SecurityRuleTooManyApplicationSecurityGroups",
                format!(
                    "Security rule {rule_id} references {} application security groups in {asg_key}; the limit is {}.",
                    asgs.len(),
                    cx.limits.asgs_per_rule_side
                ),
            ));
        }
        for asg in &asgs {
            check_ref(st, asg, Kind::Asg, &rule_id)?;
        }
        if let Some(s) = single {
            props.insert(single_key, json!(s));
        }
        if !asgs.is_empty() {
            props.insert(
                asg_key,
                Value::Array(asgs.iter().map(|id| json!({"id": id})).collect()),
            );
        }
    }
    props.insert("access".into(), json!(access));
    props.insert("priority".into(), json!(priority));
    props.insert("direction".into(), json!(direction));
    for key in [
        "sourcePortRanges",
        "destinationPortRanges",
        "sourceAddressPrefixes",
        "destinationAddressPrefixes",
    ] {
        props.insert(
            key.into(),
            Value::Array(
                json::string_list(&p, key, &what)?
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        );
    }
    Ok(json!({
        "name": name,
        "id": rule_id,
        "type": RULE_TYPE,
        "properties": props,
    }))
}

/// Checks that concern the rules together: names, priorities per direction, Azure's limits.
fn check_rule_set(cx: &Cx, rules: &[Value]) -> CloudResult<()> {
    if rules.len() > cx.limits.rules_per_nsg {
        return Err(CloudError::bad_request(
            "SecurityRulesLimitReached",
            format!(
                "Network security group {} has {} security rules, which exceeds the limit of {}.",
                cx.id,
                rules.len(),
                cx.limits.rules_per_nsg
            ),
        ));
    }
    let mut names: HashMap<String, &str> = HashMap::new();
    let mut slots: HashMap<(i64, String), &str> = HashMap::new();
    let mut src_addresses = 0usize;
    let mut dst_addresses = 0usize;
    let mut asgs: BTreeSet<String> = BTreeSet::new();
    for rule in rules {
        let name = rule["name"].as_str().unwrap_or("");
        if names.insert(name.to_ascii_lowercase(), name).is_some() {
            return Err(CloudError::bad_request(
                "DuplicateResourceName",
                format!(
                    "Resource {} has two child resources with the same name ({name}).",
                    cx.id
                ),
            ));
        }
        let p = &rule["properties"];
        let prio = p["priority"].as_i64().unwrap_or(0);
        let dir = p["direction"].as_str().unwrap_or("").to_string();
        if let Some(other) = slots.insert((prio, dir), name) {
            return Err(CloudError::bad_request(
                "SecurityRuleConflict",
                format!(
                    "Security rule {other} conflicts with rule {name}. Rules cannot have the same Priority and Direction."
                ),
            ));
        }
        src_addresses += address_count(p, "source");
        dst_addresses += address_count(p, "destination");
        for side in [
            "sourceApplicationSecurityGroups",
            "destinationApplicationSecurityGroups",
        ] {
            for asg in p[side].as_array().into_iter().flatten() {
                if let Some(id) = asg["id"].as_str() {
                    asgs.insert(id.to_ascii_lowercase());
                }
            }
        }
    }
    if src_addresses > cx.limits.source_addresses_per_nsg
        || dst_addresses > cx.limits.destination_addresses_per_nsg
    {
        return Err(CloudError::bad_request(
            "SecurityRuleAddressesLimitReached",
            format!(
                "Network security group {} has {src_addresses} source and {dst_addresses} destination addresses/ranges across its rules; the limits are {} and {}.",
                cx.id, cx.limits.source_addresses_per_nsg, cx.limits.destination_addresses_per_nsg
            ),
        ));
    }
    if asgs.len() > cx.limits.asgs_per_nsg {
        return Err(CloudError::bad_request(
            "SecurityRuleApplicationSecurityGroupsLimitReached",
            format!(
                "Network security group {} references {} distinct application security groups; the limit is {}.",
                cx.id,
                asgs.len(),
                cx.limits.asgs_per_nsg
            ),
        ));
    }
    Ok(())
}

/// IP addresses and ranges a rule side counts against the per-NSG limit (tags and `*` do not).
fn address_count(p: &Value, side: &str) -> usize {
    let counts = |s: &str| s.contains('.') || s.contains(':');
    let single = p[format!("{side}AddressPrefix")]
        .as_str()
        .is_some_and(counts);
    let list = p[format!("{side}AddressPrefixes")]
        .as_array()
        .map(|a| a.iter().filter(|v| v.as_str().is_some_and(counts)).count())
        .unwrap_or(0);
    usize::from(single) + list
}

/// `*`, a port, or `low-high`, all within 0-65535.
pub fn check_port_range(range: &str) -> CloudResult<()> {
    let err = || {
        CloudError::bad_request(
            "SecurityRuleInvalidPortRange",
            format!(
                "Security rule has invalid Port range. Value provided: {range}. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535."
            ),
        )
    };
    if range == "*" {
        return Ok(());
    }
    let port = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|p| *p <= 65535)
    };
    match range.split_once('-') {
        None => port(range).map(|_| ()).ok_or_else(err),
        Some((a, b)) => match (port(a), port(b)) {
            (Some(a), Some(b)) if a <= b => Ok(()),
            _ => Err(err()),
        },
    }
}

/// `*`, an IP address, a CIDR, or a service tag (`Internet`, `Storage.WestEurope`, ...).
pub fn valid_address_prefix(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let looks_numeric = s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':' || b == b'/')
        && (s.contains('.') || s.contains(':'));
    if looks_numeric {
        return s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok();
    }
    let mut chars = s.chars();
    let tag_shaped = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    // A regional service tag (`Storage.WestEurope`) must name a region that exists: ARM
    // refuses `Storage.Nowhere` with SecurityRuleInvalidAddressPrefix.
    tag_shaped
        && s.split_once('.')
            .is_none_or(|(_, region)| AZURE_REGIONS.iter().any(|r| r.eq_ignore_ascii_case(region)))
}

/// Region names service tags may carry (public, China and US Government clouds).
const AZURE_REGIONS: &[&str] = &[
    "australiacentral",
    "australiacentral2",
    "australiaeast",
    "australiasoutheast",
    "austriaeast",
    "belgiumcentral",
    "brazilsouth",
    "brazilsoutheast",
    "canadacentral",
    "canadaeast",
    "centralindia",
    "centralus",
    "centraluseuap",
    "chilecentral",
    "chinaeast",
    "chinaeast2",
    "chinaeast3",
    "chinanorth",
    "chinanorth2",
    "chinanorth3",
    "eastasia",
    "eastus",
    "eastus2",
    "eastus2euap",
    "francecentral",
    "francesouth",
    "germanynorth",
    "germanywestcentral",
    "indonesiacentral",
    "israelcentral",
    "italynorth",
    "japaneast",
    "japanwest",
    "jioindiacentral",
    "jioindiawest",
    "koreacentral",
    "koreasouth",
    "malaysiawest",
    "mexicocentral",
    "newzealandnorth",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "norwaywest",
    "polandcentral",
    "qatarcentral",
    "southafricanorth",
    "southafricawest",
    "southcentralus",
    "southeastasia",
    "southindia",
    "spaincentral",
    "swedencentral",
    "swedensouth",
    "switzerlandnorth",
    "switzerlandwest",
    "uaecentral",
    "uaenorth",
    "uksouth",
    "ukwest",
    "usgovarizona",
    "usgovtexas",
    "usgovvirginia",
    "westcentralus",
    "westeurope",
    "westindia",
    "westus",
    "westus2",
    "westus3",
];

fn default_rules(nsg_id: &str) -> Value {
    let rule =
        |name: &str, desc: &str, src: &str, dst: &str, access: &str, prio: i64, dir: &str| {
            json!({
                "name": name,
                "id": format!("{nsg_id}/defaultSecurityRules/{name}"),
                "type": DEFAULT_RULE_TYPE,
                "properties": {
                    "provisioningState": "Succeeded",
                    "description": desc,
                    "protocol": "*",
                    "sourcePortRange": "*",
                    "destinationPortRange": "*",
                    "sourceAddressPrefix": src,
                    "destinationAddressPrefix": dst,
                    "access": access,
                    "priority": prio,
                    "direction": dir,
                    "sourcePortRanges": [],
                    "destinationPortRanges": [],
                    "sourceAddressPrefixes": [],
                    "destinationAddressPrefixes": [],
                }
            })
        };
    json!([
        rule(
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Inbound"
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            "AzureLoadBalancer",
            "*",
            "Allow",
            65001,
            "Inbound"
        ),
        rule(
            "DenyAllInBound",
            "Deny all inbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Inbound"
        ),
        rule(
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Outbound"
        ),
        rule(
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            "*",
            "Internet",
            "Allow",
            65001,
            "Outbound"
        ),
        rule(
            "DenyAllOutBound",
            "Deny all outbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Outbound"
        ),
    ])
}

/// IDs of NSG rules that name this ASG as a source or destination.
pub fn rules_referencing_asg(st: &State, asg_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for nsg in st.of_kind(Kind::Nsg) {
        for rule in nsg.props()["securityRules"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let p = &rule["properties"];
            let hit = [
                "sourceApplicationSecurityGroups",
                "destinationApplicationSecurityGroups",
            ]
            .iter()
            .flat_map(|k| p[*k].as_array().into_iter().flatten())
            .any(|a| {
                a["id"]
                    .as_str()
                    .is_some_and(|id| id.eq_ignore_ascii_case(asg_id))
            });
            if hit && let Some(id) = rule["id"].as_str() {
                out.push(id.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        for ok in ["*", "0", "80", "65535", "40000-60000", "5-5"] {
            assert!(check_port_range(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "65536", "-1", "10-5", "80,443", "a", "1-", "1-70000", " 80",
        ] {
            let e = check_port_range(bad).unwrap_err();
            assert_eq!(e.code, "SecurityRuleInvalidPortRange", "{bad}");
        }
    }

    #[test]
    fn address_prefixes() {
        for ok in [
            "*",
            "10.0.0.0/8",
            "1.2.3.4",
            "2001:db8::/64",
            "Internet",
            "Storage.WestEurope",
            "AzureLoadBalancer",
        ] {
            assert!(valid_address_prefix(ok), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "300.1.1.1",
            "",
            "1.2.3",
            "-x",
            "Storage.Nowhere",
        ] {
            assert!(!valid_address_prefix(bad), "{bad}");
        }
    }
}
