//! Any bytes as a WS-Management request body, in UTF-8 or UTF-16: decoding answers with a
//! fault or a request, never a panic; a request is then carried out against an object
//! manager holding the served schema and the interop namespace, as a read-only user (so
//! every argument is decoded, and nothing is written), and the answer is encoded.
//!
//! The input is the body, under a Content-Type that declares UTF-16, so that UTF-16
//! without a byte order mark is read as well (UTF-8 bodies do not start with `<` and NUL).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use cimom::auth::{Access, Right, User};
use cimom::dispatch::interop::{Interop, ServerIdentity};
use cimom::dispatch::indication::settings::IndicationSettings;
use cimom::dispatch::provider::Registry;
use cimom::dispatch::Cimom;
use provider::config::Limits;
use cimom::store::Store;
use cimom::wsman::{decode_request, reply, Service, WsmanConfig};

struct Target {
    runtime: tokio::runtime::Runtime,
    service: Service,
    user: User,
    limits: Limits,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory").keep();
        let store = Arc::new(Store::open(&dir.join("fuzz.redb")).expect("database"));
        let mut registry = Registry::default();
        let indication_settings = Arc::new(
            IndicationSettings::load(store.clone()).expect("indication settings"),
        );
        Interop::new(ServerIdentity::current(), indication_settings).register(&mut registry);
        let limits = Limits::default();
        let cimom = Arc::new(Cimom::open(provider::schema::load().expect("schema"), store, registry, limits.cimom()).expect("object manager"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        Target {
            runtime,
            service: Service::new(cimom, WsmanConfig::default()),
            user: User {
                name: "fuzz".into(),
                password_hash: String::new(),
                rights: vec![Right {
                    namespace: "*".into(),
                    access: Access::ReadOnly,
                }],
            },
            limits,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = target();
    match decode_request(data, true, &t.limits.xml()) {
        Err(undecodable) => {
            let text = reply::fault_envelope(&undecodable.fault, undecodable.relates_to.as_deref());
            assert!(text.contains("Fault"));
            undecodable.charset.encode(text);
        }
        Ok((request, charset)) => {
            let answer = t.runtime.block_on(t.service.handle(&t.user, &request));
            let text = match answer {
                Ok(r) => reply::envelope(&r, request.message_id.as_deref()),
                Err(f) => reply::fault_envelope(&f, request.message_id.as_deref()),
            };
            charset.encode(text);
        }
    }
});
