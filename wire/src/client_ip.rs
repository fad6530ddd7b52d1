//! The client's address, from `X-Forwarded-For`, an optional CDN header and the proxies we
//! trust, as the key rate limits count by.
//!
//! apollo-router does not show plugins the TCP peer, so the chain of proxies is all there is.
//! It is read from the right (what our own proxies appended) and the walk stops at the first
//! hop that is not a trusted proxy: entries to its left were written by whoever sent the
//! request and prove nothing. A hop that cannot be parsed also stops the walk, and the request
//! is counted in one shared bucket, never under an address a client chose.

use std::net::IpAddr;

use ipnet::IpNet;

/// How the client's address is found.
#[derive(Debug, Clone)]
pub struct AddressRules {
    /// Proxies (ours, and a CDN's edges) whose `X-Forwarded-For` entries are skipped.
    pub trusted: Vec<IpNet>,
    /// IPv6 clients are counted per network of this prefix length: a phone is given a whole
    /// /64, so counting per /128 would give it endless budgets.
    pub ipv6_prefix: u8,
    /// A header a CDN sets to the client's address (`cf-connecting-ip`, `true-client-ip`),
    /// believed only when every `X-Forwarded-For` hop is a trusted proxy.
    pub client_header: Option<String>,
}

/// Where a request comes from, for counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddress {
    /// The client's network: a single IPv4 address (/32), an IPv6 network (`ipv6_prefix`).
    Network(IpNet),
    /// The chain holds an entry that is not an address: one shared bucket.
    Unresolvable,
    /// No `X-Forwarded-For` at all (a client reaching the router directly).
    Direct,
}

impl ClientAddress {
    /// The rate-limit key.
    pub fn key(&self) -> String {
        match self {
            ClientAddress::Network(net) => net.to_string(),
            ClientAddress::Unresolvable => "unresolvable".to_owned(),
            ClientAddress::Direct => "direct".to_owned(),
        }
    }
}

impl AddressRules {
    /// Checks the rules once, at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(format!(
                "ipv6_prefix must be 1 to 128, not {}",
                self.ipv6_prefix
            ));
        }
        if let Some(header) = &self.client_header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(format!(
                "client_address_header {header:?} is not a header name"
            ));
        }
        Ok(())
    }

    /// The client of a request with these `X-Forwarded-For` header values (every line, in
    /// order) and this value of the CDN header (if any).
    pub fn client(&self, forwarded_for: &[&str], client_header: Option<&str>) -> ClientAddress {
        let hops: Vec<&str> = forwarded_for
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .collect();
        if hops.is_empty() {
            return ClientAddress::Direct;
        }
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                return ClientAddress::Unresolvable;
            };
            if !self.is_trusted(ip) {
                return self.network(ip);
            }
        }
        // Every hop is one of ours: the request came through trusted proxies only, so the
        // CDN's header (if configured) is believed, else the first proxy's peer.
        match (self.client_header.as_ref(), client_header) {
            (Some(_), Some(value)) => match value.trim().parse::<IpAddr>() {
                Ok(ip) => self.network(ip),
                Err(_) => ClientAddress::Unresolvable,
            },
            _ => match hops[0].parse::<IpAddr>() {
                Ok(ip) => self.network(ip),
                Err(_) => ClientAddress::Unresolvable,
            },
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    fn network(&self, ip: IpAddr) -> ClientAddress {
        let prefix = match ip {
            IpAddr::V4(_) => 32,
            // An IPv4-mapped IPv6 address is an IPv4 client.
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                return self.network(IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")));
            }
            IpAddr::V6(_) => self.ipv6_prefix.min(128),
        };
        match IpNet::new(ip, prefix) {
            Ok(net) => ClientAddress::Network(net.trunc()),
            Err(_) => ClientAddress::Unresolvable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(header: Option<&str>) -> AddressRules {
        AddressRules {
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            ipv6_prefix: 64,
            client_header: header.map(str::to_owned),
        }
    }

    fn net(text: &str) -> ClientAddress {
        ClientAddress::Network(text.parse().unwrap())
    }

    #[test]
    fn forwarded_for_skips_only_trusted_hops() {
        let r = rules(None);
        // A client claiming to be 1.1.1.1 behind our proxy: we take what the proxy saw.
        assert_eq!(
            r.client(&["1.1.1.1, 203.0.113.7, 10.0.0.5"], None),
            net("203.0.113.7/32")
        );
        assert_eq!(r.client(&["203.0.113.7"], None), net("203.0.113.7/32"));
        assert_eq!(r.client(&["10.0.0.9, 10.0.0.5"], None), net("10.0.0.9/32"));
        assert_eq!(r.client(&[], None), ClientAddress::Direct);
    }

    /// Regression (issue 11): IPv6 clients were keyed per /128, and a phone's /64 gave it
    /// endless budgets.
    #[test]
    fn ipv6_clients_count_per_network() {
        let r = rules(None);
        let a = r.client(&["2001:db8:1:2::1, 10.0.0.5"], None);
        let b = r.client(&["2001:db8:1:2:ffff:ffff:ffff:ffff, 10.0.0.5"], None);
        assert_eq!(a, b);
        assert_eq!(a.key(), "2001:db8:1:2::/64");
        assert_ne!(a, r.client(&["2001:db8:1:3::1"], None));
        let narrow = AddressRules {
            ipv6_prefix: 128,
            ..rules(None)
        };
        assert_ne!(
            narrow.client(&["2001:db8::1"], None),
            narrow.client(&["2001:db8::2"], None)
        );
        // IPv4-mapped addresses are IPv4 clients.
        assert_eq!(
            r.client(&["::ffff:203.0.113.7"], None),
            net("203.0.113.7/32")
        );
    }

    /// Regression (issue 11): only the first `X-Forwarded-For` line was read, so a client's
    /// own line hid what our proxy appended on a second one.
    #[test]
    fn every_header_line_is_read() {
        let r = rules(None);
        assert_eq!(
            r.client(&["1.1.1.1", "203.0.113.7, 10.0.0.5"], None),
            net("203.0.113.7/32")
        );
    }

    /// Regression (issue 11): an unparseable hop was skipped, so the client-written entry to
    /// its left was chosen.
    #[test]
    fn an_unparseable_hop_stops_the_walk() {
        let r = rules(None);
        for chain in [
            "1.1.1.1, garbage, 10.0.0.5",
            "1.1.1.1, , 10.0.0.5",
            "garbage",
        ] {
            assert_eq!(
                r.client(&[chain], None),
                ClientAddress::Unresolvable,
                "{chain}"
            );
        }
    }

    /// Regression (issue 11): behind a CDN every edge location became one "client"; its
    /// header is believed, but only when the request came through trusted proxies only.
    #[test]
    fn a_cdn_header_is_believed_only_behind_trusted_proxies() {
        let r = rules(Some("cf-connecting-ip"));
        assert_eq!(
            r.client(&["10.2.3.4, 10.0.0.5"], Some("198.51.100.9")),
            net("198.51.100.9/32")
        );
        // Sent by a client past no proxy of ours: ignored.
        assert_eq!(
            r.client(&["203.0.113.7, 10.0.0.5"], Some("198.51.100.9")),
            net("203.0.113.7/32")
        );
        assert_eq!(r.client(&[], Some("198.51.100.9")), ClientAddress::Direct);
        assert_eq!(
            r.client(&["10.2.3.4"], Some("not an address")),
            ClientAddress::Unresolvable
        );
        // Not configured: never read.
        assert_eq!(
            rules(None).client(&["10.2.3.4"], Some("198.51.100.9")),
            net("10.2.3.4/32")
        );
    }

    #[test]
    fn rules_are_checked() {
        assert!(rules(None).validate().is_ok());
        let bad = AddressRules {
            ipv6_prefix: 0,
            ..rules(None)
        };
        assert!(bad.validate().is_err());
        assert!(rules(Some("bad header")).validate().is_err());
    }
}
