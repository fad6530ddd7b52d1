//! Any document and variables: never a panic; the key (of a response, and of an entity
//! fetch's entities) is deterministic, 64 hex digits, and does not depend on the order of
//! variable object keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json_bytes::{ByteString, Map, Value};
use switchyard_wire::cache_key::{FetchKeys, KeyParts, public_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (document, variables) = text.split_once('\0').unwrap_or((text, "{}"));
    let Ok(Value::Object(variables)) = serde_json::from_str::<Value>(variables) else { return };
    let parts = |variables: &Map<ByteString, Value>| {
        public_key(&KeyParts {
            persisted_id: None,
            document,
            operation_name: None,
            variables,
            client: "ios",
        })
    };
    let key = parts(&variables);
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    let reversed: Map<ByteString, Value> = variables
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(parts(&reversed), key);

    let entity = |variables: &Map<ByteString, Value>| {
        let keys = FetchKeys::new("posts", document, None, variables, Some("representations"));
        (keys.fetch(), keys.entity(&Value::Object(variables.clone())))
    };
    let (fetch, one) = entity(&variables);
    assert!(fetch.len() == 64 && one.len() == 64 && fetch != one);
    assert_eq!(entity(&reversed), (fetch, one));
});
