//! Virtual System Migration (DSP1081): a VM moves to another cimvirt host over that host's
//! HTTPS port. The source is a client of the destination's migration endpoint
//! ([`PREFIX`]), authenticated as the `[migration]` user, which must have write access to
//! root/virt there:
//!
//! 1. `POST incoming` offers the VM's definition. The destination checks it as DefineSystem
//!    would (name, UUID, images, host resources) and holds the name for it; with `?check` it
//!    only checks (CheckVirtualSystemIsMigratableToHost).
//! 2. `PUT incoming/ID/FILE` sends the VM's memory and state, each piece as one request with
//!    a `Content-Range`. Live (MigrationType 2, the default): the memory's data pages while
//!    the guest runs, then the pages it wrote meanwhile, round after round, until few are
//!    left; then the guest is paused for the last ones and the state. Resume (3): the guest
//!    is paused and snapshotted, and the snapshot's files sent (the memory's data extents).
//! 3. The source powers its copy off, then `POST incoming/ID/commit` defines the VM on the
//!    destination and restores it there (Live, Resume), boots it (Restart) or leaves it
//!    defined (Other: offline).
//! 4. The source then forgets the VM. Should anything fail before the commit succeeds, the
//!    source's copy goes on (restored from the snapshot if it was already off) and
//!    `DELETE incoming/ID` drops what the destination received.
//!
//! Disk images and kernels are not copied: as with libvirt, they must be at the same paths
//! on both hosts (shared storage).

mod methods;
mod receiver;
mod remote;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use cim_schema::{Instance, Value};
use serde::{Deserialize, Serialize};

use crate::vm::definition::VmDefinition;
use cimom::http::client::Client;

pub use receiver::Receiver;
pub use remote::{Remote, RemoteError};
pub use source::Refusal;

/// Where the destination's migration endpoint is.
pub const PREFIX: &str = "/cimvirt/migration/v1/";

/// The largest piece of a file one PUT carries.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// How a VM is moved (CIM_VirtualSystemMigrationSettingData.MigrationType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationKind {
    /// 1 "Other": a stopped VM's definition moves (libvirt-cim's offline migration).
    Offline,
    /// 2 "Live": the memory is copied while the guest runs, then the pages it wrote
    /// meanwhile, until few are left; the guest is paused only for those and its registers
    /// and devices (pre-copy).
    Live,
    /// 3 "Resume": the running or paused VM is paused, moved with its memory and device
    /// state, and goes on where it was on the destination.
    Resume,
    /// 4 "Restart": the VM is shut down, and booted afresh on the destination.
    Restart,
}

impl MigrationKind {
    /// The kind a MigrationSettingData asks for; none, or MigrationType 0 (Unknown), is
    /// Live, as in libvirt-cim. `Err` says why the settings cannot be honoured.
    pub fn from_settings(settings: Option<&Instance>) -> Result<MigrationKind, String> {
        let Some(settings) = settings else {
            return Ok(MigrationKind::Live);
        };
        match settings.get("TransportType") {
            // Unknown, TLS, TLS Strict: cimvirt's transport is HTTPS with a verified peer.
            None | Some(Value::UInt16(0 | 3 | 4)) => {}
            Some(other) => {
                return Err(format!(
                    "TransportType {other:?}: cimvirt migrates over HTTPS (3 TLS, 4 TLS Strict)"
                ))
            }
        }
        match settings.get("MigrationType") {
            None | Some(Value::UInt16(0 | 2)) => Ok(MigrationKind::Live),
            Some(Value::UInt16(1)) => Ok(MigrationKind::Offline),
            Some(Value::UInt16(3)) => Ok(MigrationKind::Resume),
            Some(Value::UInt16(4)) => Ok(MigrationKind::Restart),
            Some(other) => Err(format!(
                "MigrationType {other:?} is not supported (1 Other: offline, 2 Live, 3 Resume, \
                 4 Restart)"
            )),
        }
    }
}

/// What the source offers the destination.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Offer {
    /// The VM, as the source has it defined.
    pub definition: VmDefinition,
    /// How it moves.
    pub kind: MigrationKind,
    /// Whether it should run on the destination after a Resume (it was running, not
    /// paused, on the source).
    pub running: bool,
}

/// The destination's answer to an offer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// The incoming migration's id, for the later requests.
    pub id: String,
}

/// How this server reaches destination hosts.
#[derive(Clone)]
pub struct MigrationSettings {
    /// Opens the connections (trusting the configured certificates).
    pub client: Client,
    /// The user name on the destinations.
    pub user: Option<String>,
    /// The file with that user's password.
    pub password_file: Option<PathBuf>,
    /// The destinations' port when DestinationHost names none.
    pub port: u16,
    /// How long one request may take.
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use cim_schema::Name;

    fn settings(migration_type: Option<u16>, transport: Option<u16>) -> Instance {
        let mut i = Instance::new(Name::new("KVM_VirtualSystemMigrationSettingData"));
        if let Some(t) = migration_type {
            i.set("MigrationType", Value::UInt16(t));
        }
        if let Some(t) = transport {
            i.set("TransportType", Value::UInt16(t));
        }
        i
    }

    #[test]
    fn migration_types_map_to_what_is_carried_out() {
        assert_eq!(MigrationKind::from_settings(None), Ok(MigrationKind::Live));
        let kind = |m, t| MigrationKind::from_settings(Some(&settings(m, t)));
        assert_eq!(kind(None, None), Ok(MigrationKind::Live));
        assert_eq!(kind(Some(2), Some(4)), Ok(MigrationKind::Live));
        assert_eq!(kind(Some(3), Some(3)), Ok(MigrationKind::Resume));
        assert_eq!(kind(Some(1), None), Ok(MigrationKind::Offline));
        assert_eq!(kind(Some(4), Some(4)), Ok(MigrationKind::Restart));
        assert!(kind(Some(7), None).unwrap_err().contains("7"));
        assert!(kind(Some(3), Some(2)).unwrap_err().contains("HTTPS"));
    }
}
