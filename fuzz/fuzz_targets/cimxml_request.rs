//! Any bytes as a CIM-XML request body: decoding must answer with an envelope error, a CIM
//! error or an operation, never panic; and the response encoder must handle the error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use cimom::cimxml::dom::XmlLimits;
use cimom::cimxml::encode::PathContext;
use cimom::cimxml::request;
use cimom::cimxml::response::ResponseWriter;

const LIMITS: XmlLimits = XmlLimits {
    max_depth: 64,
    max_elements: 10_000,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = request::parse(data, &LIMITS) {
        let writer = ResponseWriter {
            id: req.id.clone(),
            method: req.method.clone(),
            intrinsic: req.intrinsic,
            paths: PathContext {
                host: "h".into(),
                namespace: req.namespace.clone(),
            },
            classes: Default::default(),
        };
        if let Err(e) = &req.operation {
            let xml = writer.error(e);
            assert!(xml.contains("<ERROR"));
        }
    }
});
