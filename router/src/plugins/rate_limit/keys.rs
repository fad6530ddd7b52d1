//! What a limit is keyed by: the user, the client app, the client's IP, the operation, or a
//! argument of the operation (e.g. the login name sign-in attempts are counted per).

use std::net::IpAddr;

use ipnet::IpNet;

/// Where a rule's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    User,
    Client,
    Ip,
    Operation,
    /// An argument of a root field, and a path into it (`signIn.input.login`): read from the
    /// document, following variables, so renaming a variable does not dodge the rule.
    Argument(Vec<String>),
}

impl KeySource {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "user" => Ok(Self::User),
            "client" => Ok(Self::Client),
            "ip" => Ok(Self::Ip),
            "operation" => Ok(Self::Operation),
            other => match other.strip_prefix("argument:") {
                Some(path) if path.split('.').filter(|p| !p.is_empty()).count() >= 2 => {
                    Ok(Self::Argument(path.split('.').map(str::to_owned).collect()))
                }
                _ => Err(format!(
                    "key {other:?} is not one of user, client, ip, operation, argument:<rootField>.<argument>[.<field>...]"
                )),
            },
        }
    }
}

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
        assert_eq!(
            KeySource::parse("argument:signIn.input.login").unwrap(),
            KeySource::Argument(vec!["signIn".into(), "input".into(), "login".into()])
        );
        assert!(KeySource::parse("argument:signIn").is_err());
        assert!(KeySource::parse("cookie").is_err());
    }
}
