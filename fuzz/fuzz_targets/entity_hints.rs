//! Any bytes as a subgraph's `x-switchyard-cache-entities` header: never a panic, and what
//! decodes gives every entity only well-formed tags, which encode and decode to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::entity_hints::{self, valid_tag};

fuzz_target!(|data: &[u8]| {
    let Ok(hints) = entity_hints::decode(data) else { return };
    assert!(hints.entities.len() <= entity_hints::MAX_ENTITIES);
    for name in hints.entities.keys() {
        let (tags, _) = hints.of(Some(name));
        assert!(tags.iter().all(|t| valid_tag(t)));
    }
    let again = entity_hints::decode(entity_hints::encode(&hints).as_bytes());
    assert_eq!(again.as_ref(), Ok(&hints));
});
