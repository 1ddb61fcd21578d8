//! The console's CIM instances (DSP1024, with DSP1076's KVM_ names where it has them): the
//! host's KVM_TextRedirectionService and its capabilities, each VM's
//! KVM_TextRedirectionSAP (its COM1) with a KVM_RemoteServiceAccessPoint per URL at which
//! it is reached, and its console RASD.

use cim_schema::{Class, Instance, Value};
use cimom::dispatch::provider::build_instance as build;

use super::rasd::{RESOURCE_CONSOLE, SOURCE_PTY, TARGET_SERIAL};
use crate::virt::build::{u16s, with_keys};
use crate::virt::paths;

/// EnabledState of a console with clients connected.
pub const ENABLED: u16 = 2;
/// EnabledState of a disabled console.
pub const DISABLED: u16 = 3;
/// EnabledState of an enabled console nobody is connected to.
pub const ENABLED_OFFLINE: u16 = 6;

/// RedirectionServiceType Text.
const TEXT_REDIRECTION: u16 = 2;
/// SharingMode Shared: the serial port keeps its log while clients watch.
const SHARED: u16 = 3;
/// TextFlowType Character Stream: the bytes pass unchanged.
const CHARACTER_STREAM: u16 = 2;
/// InfoFormat URL.
const URL: u16 = 200;
/// AccessContext Other.
const OTHER_CONTEXT: u16 = 1;

/// The host's text redirection service.
pub fn service(class: &Class, hostname: &str) -> Instance {
    let path = paths::text_redirection_service(hostname);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", Value::from("TextRedirectionService")),
                ("EnabledState", Value::UInt16(ENABLED)),
                ("Started", Value::Boolean(true)),
                ("HealthState", Value::UInt16(5)),
                ("OperationalStatus", u16s(&[2])),
                ("RedirectionServiceType", u16s(&[TEXT_REDIRECTION])),
                // Every VM's console may be enabled at once (libvirt-cim's value).
                ("MaxCurrentEnabledSAPs", Value::UInt16(u16::MAX)),
                ("SharingMode", Value::UInt16(SHARED)),
            ],
        ),
    )
}

/// The service's capabilities.
pub fn capabilities(class: &Class) -> Instance {
    let path = paths::text_redirection_capabilities();
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", Value::from("TextRedirectionCapabilities")),
                ("SharingModeSupported", u16s(&[SHARED])),
                ("ElementNameEditSupported", Value::Boolean(false)),
                ("RequestedStatesSupported", u16s(&[])),
            ],
        ),
    )
}

/// VM `vm`'s console: enabled or not, with `sessions` clients connected.
pub fn access_point(class: &Class, vm: &str, enabled: bool, sessions: usize) -> Instance {
    let path = paths::text_sap(vm);
    let state = match (enabled, sessions) {
        (false, _) => DISABLED,
        (true, 0) => ENABLED_OFFLINE,
        (true, _) => ENABLED,
    };
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", Value::from(format!("COM1 of {vm}"))),
                ("EnabledState", Value::UInt16(state)),
                (
                    "RequestedState",
                    Value::UInt16(if enabled { ENABLED } else { DISABLED }),
                ),
                ("EnabledDefault", Value::UInt16(ENABLED)),
                ("TextFlowType", Value::UInt16(CHARACTER_STREAM)),
                ("OperationalStatus", u16s(&[2])),
            ],
        ),
    )
}

/// The access point at `url` of VM `vm`'s console, on host `hostname`.
pub fn url(class: &Class, hostname: &str, vm: &str, url: &str) -> Instance {
    let path = paths::console_url(hostname, vm, url);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", Value::from(format!("Console of {vm}"))),
                ("AccessInfo", Value::from(url)),
                ("InfoFormat", Value::UInt16(URL)),
                ("AccessContext", Value::UInt16(OTHER_CONTEXT)),
                (
                    "OtherAccessContext",
                    Value::from("Text Console (WebSocket)"),
                ),
                ("EnabledState", Value::UInt16(ENABLED)),
            ],
        ),
    )
}

/// VM `vm`'s console RASD, as libvirt-cim shows a console (its WebSocket is the PTY).
pub fn rasd(class: &Class, vm: &str) -> Instance {
    let path = paths::console_rasd(vm);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ResourceType", Value::UInt16(RESOURCE_CONSOLE)),
                ("ElementName", Value::from("COM1")),
                ("SourceType", Value::UInt16(SOURCE_PTY)),
                ("TargetType", Value::from(TARGET_SERIAL)),
            ],
        ),
    )
}
