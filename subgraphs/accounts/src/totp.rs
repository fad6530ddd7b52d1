//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the
//! second factor authenticator apps implement, plus single-use recovery codes.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

const STEP_SECS: u64 = 30;
const DIGITS: u32 = 6;
/// Codes from one step before or after are accepted too (clock drift, slow typing).
const WINDOW: i64 = 1;

/// A new random secret (160 bits), base32 as authenticator apps expect.
pub fn new_secret() -> String {
    data_encoding::BASE32_NOPAD.encode(&rand::random::<[u8; 20]>())
}

/// The `otpauth://` URI an app can scan as a QR code.
pub fn otpauth_uri(secret: &str, issuer: &str, account: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// The code for `secret` at step `counter`.
pub fn code_at(secret: &str, counter: u64) -> Option<String> {
    let key = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).ok()?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some(format!(
        "{:0width$}",
        binary % 10u32.pow(DIGITS),
        width = DIGITS as usize
    ))
}

/// Whether `code` is valid for `secret` at `unix_time` (within the window).
pub fn verify(secret: &str, code: &str, unix_time: u64) -> bool {
    accepted_step(secret, code, unix_time).is_some()
}

/// The time step `code` belongs to, when it is valid for `secret` at `unix_time` (within the
/// window). Callers keep the last accepted step and refuse steps not after it, so a code
/// cannot be replayed inside its window.
pub fn accepted_step(secret: &str, code: &str, unix_time: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = (unix_time / STEP_SECS) as i64;
    (-WINDOW..=WINDOW).map(|d| step + d).find(|&counter| {
        counter >= 0
            && code_at(secret, counter as u64).is_some_and(|expected| {
                switchyard_kit::viewer::constant_time_eq(expected.as_bytes(), code.as_bytes())
            })
    })
}

/// Ten recovery codes (shown once) and their hashes (stored).
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..10)
        .map(|_| {
            let raw = data_encoding::BASE32_NOPAD
                .encode(&rand::random::<[u8; 10]>())
                .to_ascii_lowercase();
            format!("{}-{}", &raw[..8], &raw[8..16])
        })
        .collect();
    let hashes = codes.iter().map(|c| hash_recovery_code(c)).collect();
    (codes, hashes)
}

pub fn hash_recovery_code(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_ascii_lowercase().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA1, secret "12345678901234567890", truncated to 6 digits.
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        for (time, code) in [
            (59u64, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at(&secret, time / 30).unwrap(), code);
            assert!(verify(&secret, code, time));
        }
        assert!(
            verify(&secret, "287082", 59 + 30),
            "one step late is accepted"
        );
        assert!(
            !verify(&secret, "287082", 59 + 90),
            "three steps late is not"
        );
        assert!(!verify(&secret, "28708", 59));
        assert!(!verify(&secret, "abcdef", 59));
    }

    #[test]
    fn recovery_codes_hash_case_insensitively() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(hash_recovery_code(&codes[0].to_uppercase()), hashes[0]);
        assert!(
            otpauth_uri("ABC", "Switchyard", "ada@example.com")
                .starts_with("otpauth://totp/Switchyard:ada%40example.com?secret=ABC")
        );
    }
}
