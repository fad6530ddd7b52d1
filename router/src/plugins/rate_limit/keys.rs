//! What a limit is keyed by: the user, the client app, the client's IP, the operation, or a
//! argument of the operation (e.g. the login name sign-in attempts are counted per).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources_parse() {
        assert_eq!(
            KeySource::parse("argument:signIn.input.login").unwrap(),
            KeySource::Argument(vec!["signIn".into(), "input".into(), "login".into()])
        );
        assert!(KeySource::parse("argument:signIn").is_err());
        assert!(KeySource::parse("cookie").is_err());
    }
}
