//! Enumeration contexts of the pull operations (DSP0200 5.3.3): open result streams held
//! between requests, expiring after their OperationTimeout of inactivity.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use super::result::{Item, ItemStream, ResultForm};
use crate::error::{CimError, CimResult, StatusCode};

/// Limits of pull enumerations.
#[derive(Clone, Debug)]
pub struct PullLimits {
    /// OperationTimeout when the client gives none.
    pub default_timeout: Duration,
    /// The largest OperationTimeout accepted.
    pub max_timeout: Duration,
    /// The largest MaxObjectCount accepted.
    pub max_object_count: u32,
    /// Most enumeration contexts open at once.
    pub max_contexts: usize,
}

struct Context {
    user: String,
    namespace: String,
    /// Whether the context enumerates instances (with or without paths) or paths.
    paths: bool,
    /// `None` while a pull is using the stream.
    stream: Option<ItemStream>,
    peeked: Option<Item>,
    timeout: Duration,
    expires: Instant,
    /// What a protocol layer keeps with the context (WS-Management: the enumeration mode
    /// and filters), so it lives and expires with it.
    attachment: Option<Attachment>,
}

/// State a protocol layer keeps with an enumeration context.
pub type Attachment = Arc<dyn Any + Send + Sync>;

/// What a pull does with the next item of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Return it.
    Take,
    /// Drop it (a filter applied by the protocol layer).
    Skip,
    /// Keep it for the next pull and end this one (the response is full).
    Stop,
}

/// The open enumeration contexts.
pub struct PullContexts {
    limits: PullLimits,
    open: Mutex<HashMap<String, Context>>,
}

fn invalid_context(id: &str) -> CimError {
    CimError::new(
        StatusCode::InvalidEnumerationContext,
        format!("enumeration context '{id}' is unknown, closed or expired"),
    )
}

fn is_paths(form: ResultForm) -> bool {
    matches!(form, ResultForm::InstancePath)
}

impl PullContexts {
    /// No open contexts.
    pub fn new(limits: PullLimits) -> Self {
        PullContexts {
            limits,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Context>> {
        crate::lock(&self.open)
    }

    /// The timeout for an OperationTimeout parameter, or CIM_ERR_INVALID_OPERATION_TIMEOUT.
    pub fn timeout(&self, requested: Option<u32>) -> CimResult<Duration> {
        match requested {
            None => Ok(self.limits.default_timeout),
            Some(0) => Err(CimError::new(
                StatusCode::InvalidOperationTimeout,
                "OperationTimeout 0 (never expire) is not supported",
            )),
            Some(s) if Duration::from_secs(u64::from(s)) > self.limits.max_timeout => {
                Err(CimError::new(
                    StatusCode::InvalidOperationTimeout,
                    format!(
                        "OperationTimeout {s} s exceeds the server's maximum of {} s",
                        self.limits.max_timeout.as_secs()
                    ),
                ))
            }
            Some(s) => Ok(Duration::from_secs(u64::from(s))),
        }
    }

    /// Checks a MaxObjectCount against the limit.
    pub fn check_max_object_count(&self, n: u32) -> CimResult<()> {
        if n > self.limits.max_object_count {
            return Err(CimError::invalid_parameter(format!(
                "MaxObjectCount {n} exceeds the server's maximum of {}",
                self.limits.max_object_count
            )));
        }
        Ok(())
    }

    /// Registers a new context over `stream`; returns its id.
    pub fn open(
        &self,
        user: &str,
        namespace: &str,
        form: ResultForm,
        stream: ItemStream,
        timeout: Duration,
    ) -> CimResult<String> {
        let mut open = self.lock();
        if open.len() >= self.limits.max_contexts {
            return Err(CimError::new(
                StatusCode::ServerLimitsExceeded,
                format!(
                    "{} enumeration contexts are open, the server's maximum; close some or let them expire",
                    open.len()
                ),
            ));
        }
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        open.insert(
            id.clone(),
            Context {
                user: user.to_string(),
                namespace: namespace.to_lowercase(),
                paths: is_paths(form),
                stream: Some(stream),
                peeked: None,
                timeout,
                expires: Instant::now() + timeout,
                attachment: None,
            },
        );
        Ok(id)
    }

    /// Takes up to `max` items. Returns them and whether the enumeration has ended (the
    /// context is then closed). An error closes the context too.
    pub async fn pull(
        &self,
        id: &str,
        user: &str,
        namespace: &str,
        form: ResultForm,
        max: u32,
    ) -> CimResult<(Vec<Item>, bool)> {
        self.pull_admitting(id, user, namespace, form, max, &mut |_| Admit::Take)
            .await
    }

    /// Like [`pull`](Self::pull), with `admit` deciding for each item whether it is
    /// returned, dropped, or left for the next pull.
    pub async fn pull_admitting(
        &self,
        id: &str,
        user: &str,
        namespace: &str,
        form: ResultForm,
        max: u32,
        admit: &mut (dyn FnMut(&Item) -> Admit + Send),
    ) -> CimResult<(Vec<Item>, bool)> {
        let (mut stream, mut peeked) = {
            let mut open = self.lock();
            let ctx = open.get_mut(id).ok_or_else(|| invalid_context(id))?;
            if ctx.user != user || ctx.namespace != namespace.to_lowercase() {
                return Err(invalid_context(id));
            }
            if ctx.paths != is_paths(form) {
                return Err(CimError::invalid_parameter(format!(
                    "enumeration context '{id}' enumerates {}; use {}",
                    if ctx.paths { "paths" } else { "instances" },
                    if ctx.paths {
                        "PullInstancePaths"
                    } else {
                        "PullInstancesWithPath or PullInstances"
                    }
                )));
            }
            let stream = ctx.stream.take().ok_or_else(|| {
                CimError::new(
                    StatusCode::PullCannotBeAbandoned,
                    format!("enumeration context '{id}' is in use by another pull"),
                )
            })?;
            (stream, ctx.peeked.take())
        };
        let mut items = Vec::new();
        let mut end = false;
        let mut failure = None;
        while items.len() < max as usize {
            let next = match peeked.take() {
                Some(item) => Some(Ok(item)),
                None => stream.recv().await,
            };
            match next {
                Some(Ok(item)) => match admit(&item) {
                    Admit::Take => items.push(item),
                    Admit::Skip => {}
                    Admit::Stop => {
                        peeked = Some(item);
                        break;
                    }
                },
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
                None => {
                    end = true;
                    break;
                }
            }
        }
        // Look one item ahead so the last batch says EndOfSequence.
        if !end && failure.is_none() && max > 0 && peeked.is_none() {
            match stream.recv().await {
                Some(Ok(item)) => peeked = Some(item),
                Some(Err(e)) => failure = Some(e),
                None => end = true,
            }
        }
        let mut open = self.lock();
        if let Some(e) = failure {
            open.remove(id);
            return Err(e);
        }
        if end {
            open.remove(id);
        } else if let Some(ctx) = open.get_mut(id) {
            ctx.stream = Some(stream);
            ctx.peeked = peeked;
            ctx.expires = Instant::now() + ctx.timeout;
        } else {
            // Closed while we were pulling.
            return Err(invalid_context(id));
        }
        Ok((items, end))
    }

    fn with_context<T>(
        &self,
        id: &str,
        user: &str,
        f: impl FnOnce(&mut Context) -> T,
    ) -> CimResult<T> {
        let mut open = self.lock();
        match open.get_mut(id) {
            Some(c) if c.user == user && (c.stream.is_some() || c.expires > Instant::now()) => {
                Ok(f(c))
            }
            _ => Err(invalid_context(id)),
        }
    }

    /// Keeps `attachment` with context `id`.
    pub fn attach(&self, id: &str, user: &str, attachment: Attachment) -> CimResult<()> {
        self.with_context(id, user, |c| c.attachment = Some(attachment))
    }

    /// What is kept with context `id`, and its namespace.
    pub fn attachment(&self, id: &str, user: &str) -> CimResult<(String, Option<Attachment>)> {
        self.with_context(id, user, |c| (c.namespace.clone(), c.attachment.clone()))
    }

    /// Sets a context's idle timeout and restarts it (WS-Enumeration Renew).
    pub fn renew(&self, id: &str, user: &str, timeout: Duration) -> CimResult<()> {
        self.with_context(id, user, |c| {
            c.timeout = timeout;
            c.expires = Instant::now() + timeout;
        })
    }

    /// The time left before context `id` expires if left idle.
    pub fn remaining(&self, id: &str, user: &str) -> CimResult<Duration> {
        self.with_context(id, user, |c| {
            c.expires.saturating_duration_since(Instant::now())
        })
    }

    /// Closes a context.
    pub fn close(&self, id: &str, user: &str, namespace: &str) -> CimResult<()> {
        let mut open = self.lock();
        match open.get(id) {
            Some(c) if c.user == user && c.namespace == namespace.to_lowercase() => {
                open.remove(id);
                Ok(())
            }
            _ => Err(invalid_context(id)),
        }
    }

    /// EnumerationCount: the server cannot know how many items a provider will still
    /// produce, so the count is NULL ("unknown", which DSP0200 allows) for a valid context.
    pub fn count(&self, id: &str, user: &str, namespace: &str) -> CimResult<Option<u64>> {
        let open = self.lock();
        match open.get(id) {
            Some(c) if c.user == user && c.namespace == namespace.to_lowercase() => Ok(None),
            _ => Err(invalid_context(id)),
        }
    }

    /// Drops contexts idle past their timeout; returns how many.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut open = self.lock();
        let before = open.len();
        open.retain(|_, c| c.stream.is_none() || c.expires > now);
        before - open.len()
    }

    /// Number of open contexts.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no context is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
