//! The unit of host-port ownership: a (protocol, port) pair, and its claim-object name.

use std::fmt;
use std::str::FromStr;

use poolnet_api::portspec::Protocol;

/// One host port on one protocol. At most one live pod holds a key across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub protocol: Protocol,
    pub port: u16,
}

impl Key {
    pub fn new(protocol: Protocol, port: u16) -> Self {
        Self { protocol, port }
    }

    pub fn tcp(port: u16) -> Self {
        Self::new(Protocol::Tcp, port)
    }

    pub fn udp(port: u16) -> Self {
        Self::new(Protocol::Udp, port)
    }

    /// Name of the cluster-scoped `HostPortClaim` recording this key, e.g. `tcp-41932`.
    /// Naming the record after the key is what makes reservation linearizable: the API
    /// server refuses a second object with the same name.
    pub fn claim_name(self) -> String {
        poolnet_api::v1alpha1::host_port_claim::claim_name(self.protocol, self.port)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.protocol, self.port)
    }
}

/// A claim name that is not `<tcp|udp>-<port>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a host-port key; expected <tcp|udp>-<port 1..65535>, e.g. tcp-41932")]
pub struct KeyParseError(pub String);

impl FromStr for Key {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || KeyParseError(s.to_string());
        let (proto, port) = s.split_once('-').ok_or_else(err)?;
        // Only the canonical spelling: two names for one key would defeat the uniqueness
        // the API server enforces on names.
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(err()),
        };
        if port.is_empty() || port.starts_with('0') || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let port: u16 = port.parse().map_err(|_| err())?;
        Ok(Self { protocol, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn claim_names_are_canonical() {
        assert_eq!(Key::tcp(41932).claim_name(), "tcp-41932");
        assert_eq!(Key::udp(53).claim_name(), "udp-53");
        for bad in [
            "tcp-041932",
            "TCP-1",
            "tcp-0",
            "tcp-65536",
            "tcp",
            "sctp-1",
            "tcp-",
            "tcp-1a",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn name_round_trips(port in 1u16..=65535, udp in any::<bool>()) {
            let key = Key::new(if udp { Protocol::Udp } else { Protocol::Tcp }, port);
            prop_assert_eq!(key.claim_name().parse::<Key>(), Ok(key));
        }
    }
}
