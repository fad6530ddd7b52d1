//! The explorer's optional admin token: accepted as the password of HTTP Basic auth (so a
//! browser can prompt for it) or as a bearer token, compared as a SHA-256 digest so the time
//! taken says nothing about the token.

use http::header;
use sha2::{Digest, Sha256};

/// The digest the explorer keeps instead of the token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether the request may use the explorer (`expected` is `None` without a token).
pub fn authorized(expected: Option<&[u8; 32]>, headers: &http::HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let sent = if let Some(token) = value.strip_prefix("Bearer ") {
        Some(token.trim().to_owned())
    } else if let Some(encoded) = value.strip_prefix("Basic ") {
        base64_decode(encoded.trim())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(_, password)| password.to_owned())
            })
    } else {
        None
    };
    // Comparing digests: the time taken says nothing about the token.
    sent.is_some_and(|t| Sha256::digest(t.as_bytes())[..] == expected[..])
}

/// Standard base64 (RFC 4648, padding optional), for HTTP Basic credentials.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() > 4096 || bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(base64_decode("dTpzZWNyZXQ=").unwrap(), b"u:secret");
        assert_eq!(base64_decode("dTpzZWNyZXQ").unwrap(), b"u:secret");
        assert!(base64_decode("!!!!").is_none());
        assert!(base64_decode("a").is_none());
    }
}
