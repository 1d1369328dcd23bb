//! Arbitrary bytes as a request head: refused or parsed, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::config::Limits;
use wsgate::http::h1::{head_end, parse_request, parse_response};
use wsgate::http::FieldValue;

fuzz_target!(|data: &[u8]| {
    let _ = head_end(data);
    let head = FieldValue::copy_from_slice(data);
    let _ = parse_request(&head, &Limits::default());
    let _ = parse_response(&head);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wsgate::route::normalize(&text.into());
    }
});
