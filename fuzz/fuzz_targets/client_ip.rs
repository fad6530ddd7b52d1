//! Any `X-Forwarded-For` lines and CDN header: never a panic, and the network chosen holds an
//! address the request carries.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use switchyard_wire::client_ip::{AddressRules, ClientAddress};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\n');
    let header = parts.next();
    let lines: Vec<&str> = parts.collect();
    let rules = AddressRules {
        trusted: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        ipv6_prefix: 64,
        client_header: Some("cf-connecting-ip".into()),
    };
    if let ClientAddress::Network(net) = rules.client(&lines, header) {
        let carried = lines
            .iter()
            .flat_map(|l| l.split(','))
            .chain(header)
            .filter_map(|p| p.trim().parse::<IpAddr>().ok())
            .map(|ip| match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            });
        let mut carried = carried;
        assert!(carried.any(|ip| net.contains(&ip)), "{net} {text:?}");
    }
});
