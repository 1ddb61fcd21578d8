//! Jobs: work that takes a while (a graceful shutdown, a save, a migration, an import) runs
//! in the background, and clients follow it. Records are in the database, so a job reported
//! to a client survives a restart of cimvirtd (one that was running then ends as failed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{ChangeError, VmError};
use cimom::lock;
use cimom::store::{ProviderTable, Store};

/// Job records (JSON), by job id.
const JOBS_TABLE: ProviderTable = ProviderTable::new("jobs");

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub enum JobState {
    /// The work is under way.
    Running,
    /// It finished.
    Completed,
    /// A client cancelled it.
    Terminated,
    /// It failed.
    Exception,
}

/// Stored as the numbers records have always held (CIM_ConcreteJob.JobState's).
impl From<JobState> for u16 {
    fn from(state: JobState) -> u16 {
        match state {
            JobState::Running => 4,
            JobState::Completed => 7,
            JobState::Terminated => 8,
            JobState::Exception => 10,
        }
    }
}

impl TryFrom<u16> for JobState {
    type Error = String;
    fn try_from(number: u16) -> Result<Self, String> {
        [
            JobState::Running,
            JobState::Completed,
            JobState::Terminated,
            JobState::Exception,
        ]
        .into_iter()
        .find(|state| u16::from(*state) == number)
        .ok_or_else(|| format!("{number} is not a stored job state"))
    }
}

/// How long a finished job stays (CIM_ConcreteJob.TimeBeforeRemoval's default).
pub const TIME_BEFORE_REMOVAL: Duration = Duration::from_secs(300);

/// One job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id (a UUID).
    pub id: String,
    /// What it does, e.g. "RequestStateChange(4)".
    pub name: String,
    /// The VM it works on.
    pub vm: String,
    /// Where it is.
    pub state: JobState,
    /// PercentComplete.
    pub percent: u16,
    /// Milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// Why it failed or ended early.
    #[serde(default)]
    pub failure: Option<ChangeError>,
    /// Whether RequestStateChange may terminate it.
    #[serde(default)]
    pub cancellable: bool,
    /// What the work reports beside its success (an import's skipped Items).
    #[serde(default)]
    pub outcome: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every job, in memory and in the database.
pub struct Jobs {
    store: Arc<Store>,
    jobs: Mutex<BTreeMap<String, Job>>,
}

impl Jobs {
    /// Loads the stored jobs; one that was running when cimvirtd stopped ends as an exception.
    pub fn load(store: Arc<Store>) -> Result<Jobs, VmError> {
        let mut jobs = BTreeMap::new();
        for (id, bytes) in store
            .records(JOBS_TABLE)
            .map_err(|e| VmError::failed(e.to_string()))?
        {
            let mut job: Job = serde_json::from_slice(&bytes)
                .map_err(|e| VmError::failed(format!("the stored job {id}: {e}")))?;
            if job.state == JobState::Running {
                job.state = JobState::Exception;
                job.finished_ms = Some(now_ms());
                job.failure = Some(ChangeError::Failed(
                    "cimvirtd stopped while the job ran".into(),
                ));
            }
            jobs.insert(id, job);
        }
        let loaded = Jobs {
            store,
            jobs: Mutex::new(jobs),
        };
        for job in loaded.list() {
            loaded.persist(&job)?;
        }
        Ok(loaded)
    }

    fn persist(&self, job: &Job) -> Result<(), VmError> {
        let bytes = serde_json::to_vec(job).map_err(|e| VmError::failed(e.to_string()))?;
        self.store
            .put_record(JOBS_TABLE, &job.id, &bytes)
            .map_err(|e| VmError::failed(format!("storing job {}: {e}", job.id)))?;
        lock(&self.jobs).insert(job.id.clone(), job.clone());
        Ok(())
    }

    /// Records a new running job.
    pub fn start(&self, name: String, vm: &str, cancellable: bool) -> Result<Job, VmError> {
        let job = Job {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            vm: vm.to_owned(),
            state: JobState::Running,
            percent: 0,
            submitted_ms: now_ms(),
            finished_ms: None,
            failure: None,
            cancellable,
            outcome: None,
        };
        self.persist(&job)?;
        Ok(job)
    }

    /// Records how far a running job is (PercentComplete). Kept in memory only: a restart
    /// ends a running job anyway.
    pub fn set_percent(&self, id: &str, percent: u16) {
        if let Some(job) = lock(&self.jobs).get_mut(id) {
            if job.state == JobState::Running {
                job.percent = percent.min(99);
            }
        }
    }

    /// Records what a job reports beside its result; stored with its end.
    pub fn set_outcome(&self, id: &str, outcome: String) {
        if let Some(job) = lock(&self.jobs).get_mut(id) {
            job.outcome = Some(outcome);
        }
    }

    /// Records how a job ended (unless it was deleted meanwhile: the check and the record
    /// are one step under the lock, which `remove` takes too).
    pub fn finish(&self, id: &str, result: &Result<(), ChangeError>) {
        let mut jobs = lock(&self.jobs);
        let Some(job) = jobs.get_mut(id) else {
            return;
        };
        job.finished_ms = Some(now_ms());
        match result {
            Ok(()) => {
                job.state = JobState::Completed;
                job.percent = 100;
            }
            Err(e) => {
                job.state = match e {
                    ChangeError::Cancelled => JobState::Terminated,
                    _ => JobState::Exception,
                };
                job.failure = Some(e.clone());
            }
        }
        let stored = serde_json::to_vec(&*job)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.store
                    .put_record(JOBS_TABLE, id, &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            tracing::error!(job = id, "recording the end of a job: {e}");
        }
    }

    /// The jobs, once those finished longer than [`TIME_BEFORE_REMOVAL`] ago are removed.
    pub fn list(&self) -> Vec<Job> {
        let cutoff = now_ms().saturating_sub(TIME_BEFORE_REMOVAL.as_millis() as u64);
        let expired: Vec<String> = lock(&self.jobs)
            .values()
            .filter(|j| j.finished_ms.is_some_and(|f| f < cutoff))
            .map(|j| j.id.clone())
            .collect();
        for id in expired {
            lock(&self.jobs).remove(&id);
            let _ = self.store.delete_record(JOBS_TABLE, &id);
        }
        lock(&self.jobs).values().cloned().collect()
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<Job> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Deletes a job (KillJob's DeleteOnKill); its end, if it comes later, is not recorded.
    pub fn remove(&self, id: &str) -> Result<(), VmError> {
        let mut jobs = lock(&self.jobs);
        jobs.remove(id);
        self.store
            .delete_record(JOBS_TABLE, id)
            .map(|_| ())
            .map_err(|e| VmError::failed(format!("deleting job {id}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_a_restart_and_a_running_one_ends_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let (done, running) = {
            let jobs = Jobs::load(Arc::new(Store::open(&path).unwrap())).unwrap();
            let done = jobs
                .start("RequestStateChange(6) of a".into(), "a", false)
                .unwrap();
            jobs.finish(&done.id, &Err(ChangeError::Failed("disk full".into())));
            let running = jobs
                .start("RequestStateChange(4) of b".into(), "b", true)
                .unwrap();
            (done.id, running.id)
        };
        let jobs = Jobs::load(Arc::new(Store::open(&path).unwrap())).unwrap();
        let done = jobs.get(&done).unwrap();
        assert_eq!(done.state, JobState::Exception);
        assert_eq!(done.failure, Some(ChangeError::Failed("disk full".into())));
        let running = jobs.get(&running).unwrap();
        assert_eq!(running.state, JobState::Exception);
        assert_eq!(
            running.failure,
            Some(ChangeError::Failed(
                "cimvirtd stopped while the job ran".into()
            ))
        );
        assert_eq!(jobs.list().len(), 2, "finished minutes ago at most: kept");
    }

    #[test]
    fn job_states_are_stored_as_the_numbers_older_records_hold() {
        assert_eq!(serde_json::to_string(&JobState::Exception).unwrap(), "10");
        let read: JobState = serde_json::from_str("7").unwrap();
        assert_eq!(read, JobState::Completed);
        assert!(serde_json::from_str::<JobState>("5").is_err());
    }
}
