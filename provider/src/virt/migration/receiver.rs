//! The destination's side: the migration endpoint, which takes offers, receives snapshot
//! files and takes VMs over.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_RANGE, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hypervisor_shim::lifecycle::State;
use hypervisor_shim::vmm::snapshot::{self, MEMORY_FILE, STATE_FILE};
use tracing::{info, warn};

use super::{Accepted, MigrationKind, Offer, CHUNK_BYTES, PREFIX};
use crate::vm::console::Departure;
use crate::vm::manager::{FileAccess, VirtManager};
use crate::vm::{VmError, VmErrorKind};
use cimom::auth::User;
use cimom::http::body::ResponseBody;
use cimom::http::{plain as answer, Endpoint};
use cimom::lock;

/// A migration that has gone quiet this long is dropped.
const IDLE_EXPIRY: Duration = Duration::from_secs(600);
/// The largest offer (a VM definition in JSON).
const MAX_OFFER_BYTES: usize = 1 << 20;
/// The largest state file (registers and device state in JSON).
const MAX_STATE_BYTES: u64 = 64 << 20;
/// How long one request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// One migration under way to this host.
struct Arrival {
    offer: Offer,
    dir: PathBuf,
    last_activity: Instant,
}

/// The migration endpoint of this host.
pub struct Receiver {
    manager: Arc<VirtManager>,
    arrivals: Mutex<HashMap<String, Arrival>>,
}

/// An answer: a status and a line of text.
type Answer = Response<ResponseBody>;

fn refused(e: &VmError) -> Answer {
    let status = match e.kind {
        VmErrorKind::Exists => StatusCode::CONFLICT,
        VmErrorKind::NotFound => StatusCode::NOT_FOUND,
        VmErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    answer(status, &e.message)
}

impl Receiver {
    /// The endpoint of `manager`'s host.
    pub fn new(manager: Arc<VirtManager>) -> Arc<Receiver> {
        Arc::new(Receiver {
            manager,
            arrivals: Mutex::new(HashMap::new()),
        })
    }

    /// Drops the migrations that went quiet, and their files.
    fn expire(&self) {
        lock(&self.arrivals).retain(|id, a| {
            let keep = a.last_activity.elapsed() < IDLE_EXPIRY;
            if !keep {
                warn!(
                    id,
                    vm = a.offer.definition.name,
                    "an incoming migration went quiet: dropped"
                );
                let _ = std::fs::remove_dir_all(&a.dir);
            }
            keep
        });
    }

    async fn take_offer(&self, body: Incoming, check_only: bool) -> Answer {
        let bytes = match read_body(body, MAX_OFFER_BYTES).await {
            Ok(b) => b,
            Err(a) => return a,
        };
        let mut offer: Offer = match serde_json::from_slice(&bytes) {
            Ok(o) => o,
            Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("not an offer: {e}")),
        };
        let name = offer.definition.name.clone();
        if let Err(why) = crate::vm::definition::check_name(&name) {
            return answer(StatusCode::BAD_REQUEST, &why);
        }
        // The state the source saved, or snapshots it took, do not come along.
        offer.definition.saved = None;
        offer.definition.snapshots.clear();
        offer.definition.last_applied = None;
        self.expire();
        let manager = self.manager.clone();
        let definition = offer.definition.clone();
        let checked = tokio::task::spawn_blocking(move || manager.check_new(&definition)).await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return refused(&e),
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
        let mut arrivals = lock(&self.arrivals);
        if arrivals.values().any(|a| a.offer.definition.name == name) {
            return answer(
                StatusCode::CONFLICT,
                &format!("VM {name} is already on its way to this host"),
            );
        }
        if check_only {
            return answer(StatusCode::OK, &format!("VM {name} can come"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.manager.vm_file(&offer.definition, "incoming");
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{}: {e}", dir.display()),
            );
        }
        info!(id, vm = name, kind = ?offer.kind, "incoming migration");
        arrivals.insert(
            id.clone(),
            Arrival {
                offer,
                dir,
                last_activity: Instant::now(),
            },
        );
        let json = serde_json::to_vec(&Accepted { id }).expect("an id serializes");
        Response::builder()
            .status(StatusCode::CREATED)
            .header(CONTENT_TYPE, "application/json")
            .body(ResponseBody::full(json))
            .expect("static response parts are valid")
    }

    /// Writes one piece of a snapshot file where its Content-Range says.
    async fn take_piece(&self, id: &str, file: &str, request: Request<Incoming>) -> Answer {
        let (dir, memory_bytes) = {
            let mut arrivals = lock(&self.arrivals);
            let Some(arrival) = arrivals.get_mut(id) else {
                return answer(StatusCode::NOT_FOUND, &format!("no migration {id}"));
            };
            arrival.last_activity = Instant::now();
            (
                arrival.dir.clone(),
                arrival.offer.definition.memory_mib << 20,
            )
        };
        let limit = match file {
            MEMORY_FILE => memory_bytes,
            STATE_FILE => MAX_STATE_BYTES,
            _ => {
                return answer(
                    StatusCode::NOT_FOUND,
                    &format!("no file {file} in a migration"),
                )
            }
        };
        let range = request
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range);
        let Some((range, total)) = range else {
            return answer(
                StatusCode::BAD_REQUEST,
                "a piece needs Content-Range: bytes FIRST-LAST/TOTAL (or */TOTAL)",
            );
        };
        if total > limit {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("{file} of {total} bytes: at most {limit} are expected"),
            );
        }
        let bytes = match read_body(request.into_body(), CHUNK_BYTES as usize).await {
            Ok(b) => b,
            Err(a) => return a,
        };
        let offset = match range {
            Some((first, last)) if last - first + 1 == bytes.len() as u64 && last < total => first,
            None if bytes.is_empty() => 0,
            _ => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    "the body does not match its Content-Range",
                )
            }
        };
        let path = dir.join(file);
        let written =
            tokio::task::spawn_blocking(move || write_piece(&path, total, offset, &bytes)).await;
        match written {
            Ok(Ok(())) => answer(StatusCode::OK, "stored"),
            Ok(Err(e)) => answer(StatusCode::INTERNAL_SERVER_ERROR, &e),
            Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    async fn commit(&self, id: &str) -> Answer {
        let Some(arrival) = lock(&self.arrivals).remove(id) else {
            return answer(StatusCode::NOT_FOUND, &format!("no migration {id}"));
        };
        let manager = self.manager.clone();
        let (offer, dir) = (arrival.offer, arrival.dir);
        let name = offer.definition.name.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = manager.take_over(&offer, &dir);
            let _ = std::fs::remove_dir_all(&dir);
            result
        })
        .await;
        match result {
            Ok(Ok(())) => {
                info!(id, vm = name, "migration arrived");
                answer(StatusCode::OK, &format!("VM {name} runs here now"))
            }
            Ok(Err(e)) => {
                warn!(id, vm = name, "an incoming migration failed: {}", e.message);
                refused(&e)
            }
            Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn abort(&self, id: &str) -> Answer {
        match lock(&self.arrivals).remove(id) {
            Some(arrival) => {
                let _ = std::fs::remove_dir_all(&arrival.dir);
                info!(
                    id,
                    vm = arrival.offer.definition.name,
                    "incoming migration withdrawn"
                );
                answer(StatusCode::OK, "withdrawn")
            }
            None => answer(StatusCode::NOT_FOUND, &format!("no migration {id}")),
        }
    }
}

#[async_trait::async_trait]
impl Endpoint for Receiver {
    fn prefix(&self) -> &'static str {
        PREFIX
    }

    /// Whoever migrates VMs here defines them with whatever host files they name, which
    /// only an administrator may.
    fn administrators_only(&self) -> Option<&'static str> {
        Some("migrate VMs here")
    }

    async fn serve(&self, _user: Arc<User>, request: Request<Incoming>) -> Answer {
        let path = request
            .uri()
            .path()
            .strip_prefix(PREFIX)
            .unwrap_or_default();
        let check_only = request.uri().query() == Some("check");
        let parts: Vec<&str> = path.split('/').collect();
        let id = parts.get(1).map(|s| s.to_string()).unwrap_or_default();
        match (request.method().clone(), parts.as_slice()) {
            (Method::POST, ["incoming"]) => self.take_offer(request.into_body(), check_only).await,
            (Method::PUT, ["incoming", _, file]) => {
                let file = file.to_string();
                self.take_piece(&id, &file, request).await
            }
            (Method::POST, ["incoming", _, "commit"]) => self.commit(&id).await,
            (Method::DELETE, ["incoming", _]) => self.abort(&id),
            _ => answer(StatusCode::NOT_FOUND, "no such migration request"),
        }
    }
}

/// The whole body, up to `limit` bytes (413 above) and [`BODY_TIMEOUT`] (408 after).
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Answer> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("more than {limit} bytes"),
            ))
        }
        Ok(Err(e)) => Err(answer(StatusCode::BAD_REQUEST, &e.to_string())),
        Err(_) => Err(answer(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

/// `bytes FIRST-LAST/TOTAL` or `bytes */TOTAL`: the range (if any) and the file's size.
fn parse_content_range(value: &str) -> Option<(Option<(u64, u64)>, u64)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let total = total.parse().ok()?;
    if range == "*" {
        return Some((None, total));
    }
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((Some((first, last)), total))
}

/// Writes `bytes` at `offset` of the file at `path`, which is `total` bytes long.
fn write_piece(path: &Path, total: u64, offset: u64, bytes: &[u8]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    if file.metadata().map_err(io)?.len() != total {
        file.set_len(total).map_err(io)?;
    }
    file.write_all_at(bytes, offset).map_err(io)
}

impl VirtManager {
    /// Takes over a VM from another host: defines it, then restores it from the snapshot
    /// received in `dir` (Live, Resume), boots it (Restart) or leaves it off (offline). Should
    /// that fail, the definition is taken back.
    pub(super) fn take_over(&self, offer: &Offer, dir: &Path) -> Result<(), VmError> {
        let definition = &offer.definition;
        let name = &definition.name;
        let _claim = self
            .claim(name)
            .map_err(|e| VmError::failed(e.describe()))?;
        let config = definition.vm_config(self.console_log(definition));
        let from_snapshot = matches!(offer.kind, MigrationKind::Live | MigrationKind::Resume);
        if from_snapshot {
            for file in [STATE_FILE, MEMORY_FILE] {
                if !dir.join(file).exists() {
                    return Err(VmError::invalid(format!(
                        "the snapshot's {file} has not arrived"
                    )));
                }
            }
            snapshot::retarget(dir, &config).map_err(|e| VmError::invalid(e.to_string()))?;
        }
        // The migration endpoint is an administrator's (see `serve`): the VM keeps the files
        // it had on the source, shared storage.
        self.define(definition.clone(), FileAccess::Any)?;
        let started = match offer.kind {
            MigrationKind::Offline => Ok(()),
            MigrationKind::Live | MigrationKind::Resume => {
                self.restore_from(definition, dir, offer.running)
            }
            MigrationKind::Restart => self.supervisor().start(&config).map(drop),
        };
        if let Err(e) = started {
            let _ = self.forget(definition, State::Off, &Departure::Destroyed);
            return Err(VmError::failed(format!(
                "VM {name} could not start here: {e}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_and_pieces_land_at_their_offsets() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((Some((0, 9)), 100))
        );
        assert_eq!(parse_content_range("bytes */0"), Some((None, 0)));
        for bad in ["bytes 9-0/100", "0-9/100", "bytes 0-9", "bytes a-b/1"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        write_piece(&path, 1 << 20, 4096, b"late").unwrap();
        write_piece(&path, 1 << 20, 0, b"early").unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 1 << 20);
        assert_eq!(&data[..5], b"early");
        assert_eq!(&data[4096..4100], b"late");
    }
}
