//! Any text as a persisted-query manifest: never a panic; what loads has valid ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::manifest::{Manifest, is_valid_id};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(manifest) = Manifest::parse(text) {
        assert!(manifest.ids().all(is_valid_id));
    }
});
