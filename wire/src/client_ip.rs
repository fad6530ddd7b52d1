//! The client's address, from `X-Forwarded-For` and the proxies we trust.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address: the right-most `X-Forwarded-For` entry that is not one of our trusted
/// proxies. Entries a client wrote itself sit to the left of what our proxies appended, so they
/// are never chosen while a trusted proxy is in front. `None` without the header.
pub fn client_ip(forwarded_for: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let chain: Vec<IpAddr> = forwarded_for?
        .split(',')
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|ip| !trusted.iter().any(|net| net.contains(*ip)))
        .copied()
        .or_else(|| chain.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_skips_only_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // A client claiming to be 1.1.1.1 behind our proxy: we take what the proxy saw.
        assert_eq!(
            client_ip(Some("1.1.1.1, 203.0.113.7, 10.0.0.5"), &trusted),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some("203.0.113.7"), &trusted),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some("10.0.0.9, 10.0.0.5"), &trusted),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(client_ip(Some("garbage"), &trusted), None);
        assert_eq!(client_ip(None, &trusted), None);
    }
}
