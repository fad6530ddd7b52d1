//! Any `X-Forwarded-For` text: never a panic, and the address chosen is one the header holds.
#![no_main]

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::client_ip::client_ip;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    if let Some(ip) = client_ip(Some(text), &trusted) {
        assert!(text.split(',').any(|part| part.trim().parse().ok() == Some(ip)));
    }
});
