//! Any bytes as a POST body: never a panic, and whatever is accepted reads back the same from
//! its own re-encoding (the router forwards a re-encoding, so it must mean the same).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::request::{WireRequest, from_body};

fn encode(request: &WireRequest) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    let string = |s: &String| serde_json::Value::String(s.clone());
    if let Some(q) = &request.query {
        object.insert("query".into(), string(q));
    }
    if let Some(n) = &request.operation_name {
        object.insert("operationName".into(), string(n));
    }
    if let Some(d) = &request.document_id {
        object.insert("documentId".into(), string(d));
    }
    let mut text = serde_json::to_string(&object).expect("encodes");
    text.pop();
    for (name, value) in [("variables", &request.variables), ("extensions", &request.extensions)] {
        if !value.is_empty() {
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&format!("\"{name}\":{}", serde_json::to_string(value).expect("encodes")));
        }
    }
    text.push('}');
    text.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = from_body(data) {
        let again = from_body(&encode(&request)).expect("a re-encoding reads back");
        assert_eq!(again, request);
    }
});
