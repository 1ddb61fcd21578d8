//! The VMs' serial consoles over the network (DSP1024 Text Console Redirection): a
//! WebSocket at `/console/NAME` on every listener ([`endpoint`]), shared between clients
//! ([`crate::vm::console`]), found through CIM as each VM's KVM_TextRedirectionSAP and the URLs beside it,
//! and described to DefineSystem by the console RASD ([`rasd`]).

pub mod endpoint;
pub mod model;
pub mod rasd;

pub use crate::vm::console::{ConsoleLimits, Consoles, Departure, Output, Rights, Session};
pub use endpoint::ConsoleEndpoint;

use std::net::SocketAddr;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// The path prefix of the console endpoint.
pub const PREFIX: &str = "/console/";

/// What a VM name needs escaped in a URL path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Where the consoles are reached: one base URL per listener of the server.
#[derive(Clone, Debug, Default)]
pub struct ConsoleUrls {
    bases: Vec<String>,
}

impl ConsoleUrls {
    /// The bases for listeners at `listeners` (address, and whether it is HTTPS). A listener
    /// on every address (0.0.0.0, ::) is named by `host`, which a client can resolve.
    pub fn new(listeners: &[(SocketAddr, bool)], host: &str) -> ConsoleUrls {
        let bases = listeners
            .iter()
            .map(|(addr, tls)| {
                let scheme = if *tls { "wss" } else { "ws" };
                let authority = if addr.ip().is_unspecified() {
                    format!("{host}:{}", addr.port())
                } else {
                    addr.to_string()
                };
                format!("{scheme}://{authority}")
            })
            .collect();
        ConsoleUrls { bases }
    }

    /// The URLs of VM `vm`'s console, secure ones first.
    pub fn of(&self, vm: &str) -> Vec<String> {
        let mut urls: Vec<String> = self
            .bases
            .iter()
            .map(|base| format!("{base}{PREFIX}{}", utf8_percent_encode(vm, SEGMENT)))
            .collect();
        urls.sort_by_key(|u| !u.starts_with("wss:"));
        urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_each_listener_and_escape_the_vm_name() {
        let urls = ConsoleUrls::new(
            &[
                ("127.0.0.1:5988".parse().unwrap(), false),
                ("0.0.0.0:5989".parse().unwrap(), true),
                ("[::1]:5986".parse().unwrap(), true),
            ],
            "host.example",
        );
        assert_eq!(
            urls.of("web 1?#"),
            [
                "wss://host.example:5989/console/web%201%3F%23",
                "wss://[::1]:5986/console/web%201%3F%23",
                "ws://127.0.0.1:5988/console/web%201%3F%23",
            ]
        );
    }
}
