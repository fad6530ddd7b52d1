//! Any text as `retired.yaml`: never a panic, and lookups on what loads never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::retired::Retired;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(retired) = Retired::parse(text) {
        let _ = retired.client_version(Some("ios"), Some("1.2.3"));
        let _ = retired.client_version(Some("ios"), Some(text));
        let _ = retired.operation(text);
    }
});
