//! What a notification is about, and which push service a device uses.

use async_graphql::Enum;

/// The kinds of notification (also the unit of a push preference).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[graphql(name = "NotificationKind")]
pub enum Kind {
    /// Someone liked your post.
    Like,
    /// Someone commented on your post.
    Comment,
    /// Someone followed you.
    Follow,
    /// Someone you follow posted.
    Post,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Like, Kind::Comment, Kind::Follow, Kind::Post];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Like => "LIKE",
            Kind::Comment => "COMMENT",
            Kind::Follow => "FOLLOW",
            Kind::Post => "POST",
        }
    }

    /// A stored name back to the kind (`None` for a name this version does not know).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Where a device gets its pushes.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[graphql(name = "DevicePlatform")]
pub enum Platform {
    /// Apple Push Notification service.
    Ios,
    /// Firebase Cloud Messaging.
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "IOS",
            Platform::Android => "ANDROID",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Platform::Ios, Platform::Android]
            .into_iter()
            .find(|p| p.as_str() == name)
    }

    /// A token as this platform issues it, or why it is not one. APNs tokens are hex (32
    /// bytes today, up to 100 allowed); FCM registration tokens are URL-safe text of about 160
    /// characters. Both are bounded so a hostile client cannot store megabytes.
    pub fn check_token(self, raw: &str) -> Result<String, String> {
        let token = raw.trim();
        match self {
            Platform::Ios => {
                if token.len() < 64
                    || token.len() > 200
                    || !token.len().is_multiple_of(2)
                    || !token.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err("an APNs device token is 64 to 200 hexadecimal characters".into());
                }
                Ok(token.to_ascii_lowercase())
            }
            Platform::Android => {
                if token.len() < 32
                    || token.len() > 4096
                    || !token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
                {
                    return Err("an FCM registration token is 32 to 4096 characters of A-Z, a-z, 0-9, '-', '_', ':' and '.'".into());
                }
                Ok(token.to_owned())
            }
        }
    }
}
