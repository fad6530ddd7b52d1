//! Any text as a GET query string: never a panic, and whatever is accepted reads back the same
//! from its own re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::request::from_query_string;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(request) = from_query_string(text) {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(q) = &request.query {
            out.append_pair("query", q);
        }
        if let Some(n) = &request.operation_name {
            out.append_pair("operationName", n);
        }
        if let Some(d) = &request.document_id {
            out.append_pair("documentId", d);
        }
        if !request.variables.is_empty() {
            out.append_pair("variables", &serde_json::to_string(&request.variables).unwrap());
        }
        if !request.extensions.is_empty() {
            out.append_pair("extensions", &serde_json::to_string(&request.extensions).unwrap());
        }
        let again = from_query_string(&out.finish()).expect("a re-encoding reads back");
        assert_eq!(again, request);
    }
});
