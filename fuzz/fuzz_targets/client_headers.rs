//! Any bytes as the client name and version headers: never a panic; an accepted name is
//! trimmed, bounded and visible ASCII.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchyard_wire::names::{CLIENT_NAME_HEADER, CLIENT_VERSION_HEADER};
use switchyard_wire::request::{MAX_CLIENT_HEADER_BYTES, client};

fuzz_target!(|data: &[u8]| {
    let (name, version) = data.split_at(data.len() / 2);
    let mut headers = HeaderMap::new();
    for (header, value) in [(CLIENT_NAME_HEADER, name), (CLIENT_VERSION_HEADER, version)] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header, value);
        }
    }
    if let Ok(client) = client(&headers) {
        for value in [client.name, client.version].into_iter().flatten() {
            assert!(!value.is_empty() && value.len() <= MAX_CLIENT_HEADER_BYTES);
            assert_eq!(value.trim(), value);
            assert!(value.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
        }
    }
});
