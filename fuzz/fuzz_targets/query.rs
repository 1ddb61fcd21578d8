//! Any text as a WQL or DMTF:FQL query: parsing gives a query or CIM_ERR_INVALID_QUERY,
//! and evaluating a parsed query against an instance never panics.
#![no_main]

use cim_schema::{Instance, Value};
use libfuzzer_sys::fuzz_target;
use cimom::dispatch::query::{Language, Query};
use cimom::error::StatusCode;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let language = if selector & 1 == 0 { Language::Wql } else { Language::Fql };
    match Query::parse(language, text) {
        Ok(q) => {
            let mut inst = Instance::new("C");
            inst.set("Name", "a value long enough for LIKE patterns to matter: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
            inst.set("N", Value::UInt32(7));
            inst.set("B", true);
            let _ = q.matches(&inst, &|a, b| a == b);
        }
        Err(e) => assert_eq!(e.code, StatusCode::InvalidQuery),
    }
});
