//! Environment variables that tell a pod its host ports, named as AKS names them:
//! `<deployment>_PORT_<port>_<PROTO>_HOSTPORT`, e.g. `echoserver-hostport_PORT_8080_TCP_HOSTPORT`.
//!
//! Kubernetes accepts `-` and `.` in variable names, but a POSIX shell cannot read them
//! (`$echoserver-hostport_…` is not a variable). So a name a shell cannot read also gets an
//! alias with every such character turned into `_` (and a leading `_` if it would start with
//! a digit): `echoserver_hostport_PORT_8080_TCP_HOSTPORT`.

use super::reservation::Assignment;

/// The label the ReplicaSet controller puts on its pods; also the suffix of their RS name.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// What names a pod's workload, taken from its metadata at admission (when a pod created
/// by a controller usually has a `generateName` and no name yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity<'a> {
    pub name: Option<&'a str>,
    pub generate_name: Option<&'a str>,
    /// Kind and name of the owner reference with `controller: true`.
    pub controller: Option<(&'a str, &'a str)>,
    /// Value of the `pod-template-hash` label.
    pub template_hash: Option<&'a str>,
}

/// The "deployment name" of the variables: the owning ReplicaSet's name minus
/// `-<pod-template-hash>`; else the controller's name (StatefulSet, Job, …); else the pod's
/// name; else its `generateName` without the trailing `-`; else `pod`.
pub fn deployment_name(pod: &PodIdentity<'_>) -> String {
    if let Some((kind, name)) = pod.controller {
        if kind == "ReplicaSet"
            && let Some(hash) = pod.template_hash
            && let Some(base) = name.strip_suffix(hash).and_then(|s| s.strip_suffix('-'))
            && !base.is_empty()
        {
            return base.to_string();
        }
        if !name.is_empty() {
            return name.to_string();
        }
    }
    if let Some(name) = pod.name.filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    match pod.generate_name.map(|g| g.trim_end_matches('-')) {
        Some(g) if !g.is_empty() => g.to_string(),
        _ => "pod".to_string(),
    }
}

/// `<deployment>_PORT_<port>_<PROTO>_HOSTPORT`.
pub fn env_var_name(deployment: &str, a: &Assignment) -> String {
    format!(
        "{deployment}_PORT_{}_{}_HOSTPORT",
        a.container_port,
        a.protocol.as_kubernetes()
    )
}

/// True when a POSIX shell can expand `$name`: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_shell_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The alias a shell can read, or `None` when `name` already is one.
pub fn shell_alias(name: &str) -> Option<String> {
    if is_shell_name(name) {
        return None;
    }
    let mut alias: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !alias.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        alias.insert(0, '_');
    }
    Some(alias)
}

/// Every variable for `assignments`, in order: each AKS name followed by its alias, if any.
pub fn env_vars(deployment: &str, assignments: &[Assignment]) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(assignments.len() * 2);
    for a in assignments {
        let name = env_var_name(deployment, a);
        let value = a.host_port.to_string();
        let alias = shell_alias(&name);
        out.push((name, value.clone()));
        if let Some(alias) = alias {
            out.push((alias, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::portspec::Protocol;
    use proptest::prelude::*;

    fn a(container_port: u16, host_port: u16) -> Assignment {
        Assignment {
            container_port,
            protocol: Protocol::Tcp,
            host_port,
        }
    }

    #[test]
    fn echoserver_variables_match_the_aks_docs_plus_alias() {
        let pod = PodIdentity {
            generate_name: Some("echoserver-hostport-75dc8d8855-"),
            controller: Some(("ReplicaSet", "echoserver-hostport-75dc8d8855")),
            template_hash: Some("75dc8d8855"),
            ..PodIdentity::default()
        };
        let dep = deployment_name(&pod);
        assert_eq!(dep, "echoserver-hostport");
        let vars = env_vars(&dep, &[a(8080, 46645), a(8443, 49482)]);
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "echoserver-hostport_PORT_8080_TCP_HOSTPORT",
                "echoserver_hostport_PORT_8080_TCP_HOSTPORT",
                "echoserver-hostport_PORT_8443_TCP_HOSTPORT",
                "echoserver_hostport_PORT_8443_TCP_HOSTPORT",
            ]
        );
        assert_eq!(vars[0].1, "46645");
        assert_eq!(vars[3].1, "49482");
    }

    #[test]
    fn deployment_name_falls_back_in_order() {
        let rs_without_hash = PodIdentity {
            controller: Some(("ReplicaSet", "web-abc")),
            ..PodIdentity::default()
        };
        assert_eq!(deployment_name(&rs_without_hash), "web-abc");
        let sts = PodIdentity {
            name: Some("db-0"),
            controller: Some(("StatefulSet", "db")),
            ..PodIdentity::default()
        };
        assert_eq!(deployment_name(&sts), "db");
        let bare = PodIdentity {
            name: Some("game"),
            ..PodIdentity::default()
        };
        assert_eq!(deployment_name(&bare), "game");
        let generated = PodIdentity {
            generate_name: Some("game-"),
            ..PodIdentity::default()
        };
        assert_eq!(deployment_name(&generated), "game");
        assert_eq!(deployment_name(&PodIdentity::default()), "pod");
        // A hash that is not the suffix is not stripped.
        let odd = PodIdentity {
            controller: Some(("ReplicaSet", "web-1234")),
            template_hash: Some("99"),
            ..PodIdentity::default()
        };
        assert_eq!(deployment_name(&odd), "web-1234");
    }

    #[test]
    fn plain_names_get_no_alias() {
        assert_eq!(shell_alias("web_PORT_80_TCP_HOSTPORT"), None);
        assert_eq!(
            shell_alias("3d.game_PORT_80_UDP_HOSTPORT").as_deref(),
            Some("_3d_game_PORT_80_UDP_HOSTPORT")
        );
        assert_eq!(env_vars("web", &[a(80, 40000)]).len(), 1);
    }

    proptest! {
        #[test]
        fn aliases_are_shell_names(name in "[a-z0-9.-]{1,30}_PORT_[0-9]{1,5}_(TCP|UDP)_HOSTPORT") {
            match shell_alias(&name) {
                None => prop_assert!(is_shell_name(&name)),
                Some(alias) => {
                    prop_assert!(is_shell_name(&alias));
                    prop_assert!(alias.ends_with(&name[name.len() - 10..]));
                }
            }
        }
    }
}
