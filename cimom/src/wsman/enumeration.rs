//! WS-Enumeration over CIM (DSP0226 clause 8, DSP0227 clause 8): Enumerate with its
//! modes, optimization, polymorphism and filters (WQL, CQL, selector, association), and
//! Pull, Release, Renew and GetStatus on the object manager's enumeration contexts.

use std::sync::Arc;
use std::time::Duration;

use cim_schema::{Class, Name, ObjectPath, Value};

use super::fault::{Fault, Subcode};
use super::reply::{Reply, ENVELOPE_OVERHEAD};
use super::resource::{self, Resource};
use super::{names, wscim, Call};
use crate::cimxml::dom::Element;
use crate::cimxml::encode::{text, InstanceFilter};
use crate::dispatch::operation::{AssociationFilter, InstanceOptions, OpenOptions, Operation};
use crate::dispatch::pull::Admit;
use crate::dispatch::query::{Expr, Language, Query};
use crate::dispatch::result::{Item, Outcome, ResultForm};
use crate::error::{CimError, StatusCode};

/// What each item of an enumeration is written as (wsman:EnumerationMode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The instance.
    Object,
    /// Its endpoint reference.
    Epr,
    /// Both, in a wsman:Item.
    ObjectAndEpr,
}

/// What a WS-Man enumeration keeps with its context between pulls.
struct State {
    namespace: String,
    mode: Mode,
    /// PolymorphismMode None: only instances of exactly this class.
    exact_class: Option<Name>,
    /// ExcludeSubClassProperties: instances written as this class, with its properties.
    as_class: Option<Arc<Class>>,
    /// The selector filter's keys.
    selectors: Vec<(String, Value)>,
    /// What the opened enumeration yields, which every pull of it asks for: paths, or
    /// instances with paths (a query has no paths-only form, so it yields instances in
    /// EnumerateEPR mode too).
    form: ResultForm,
    /// The enumeration again, in its cheapest form, to count it for
    /// TotalItemsCountEstimate.
    count: Option<Operation>,
    /// The count, once a client asked for it.
    total: std::sync::Mutex<Option<u64>>,
}

impl State {
    fn admits_item(&self, item: &Item) -> bool {
        match item {
            Item::Instance { object, .. } => self.admits(&object.path),
            Item::Path(path) => self.admits(path),
            _ => false,
        }
    }

    fn admits(&self, path: &ObjectPath) -> bool {
        self.exact_class
            .as_ref()
            .is_none_or(|c| path.class_name == *c)
            && resource::matches_selectors(path, &self.selectors)
    }

    /// Writes one item; `None` when the item is filtered out.
    fn write(&self, out: &mut String, item: &Item) -> Option<()> {
        let (path, instance) = match item {
            Item::Instance { object, filter, .. } => {
                (&object.path, Some((&object.instance, filter)))
            }
            Item::Path(path) => (path, None),
            _ => return None,
        };
        if !self.admits(path) {
            return None;
        }
        let ns = path.namespace.as_deref().unwrap_or(&self.namespace);
        let object = |out: &mut String| {
            if let Some((inst, filter)) = instance {
                match &self.as_class {
                    Some(class) => {
                        let only = InstanceFilter {
                            properties: Some(Arc::new(
                                class
                                    .properties
                                    .values()
                                    .map(|p| p.name.clone())
                                    .filter(|n| filter.includes(n))
                                    .collect(),
                            )),
                        };
                        wscim::write_instance_as(out, inst, class.name.as_str(), &only, ns)
                    }
                    None => wscim::write_instance(out, inst, filter, ns),
                }
            }
        };
        let epr = |out: &mut String| {
            out.push_str("<wsa:EndpointReference>");
            wscim::write_epr_content(out, path, ns);
            out.push_str("</wsa:EndpointReference>");
        };
        match self.mode {
            Mode::Object => object(out),
            Mode::Epr => epr(out),
            Mode::ObjectAndEpr => {
                out.push_str("<wsman:Item>");
                object(out);
                epr(out);
                out.push_str("</wsman:Item>");
            }
        }
        Some(())
    }
}

/// The settings of an Enumerate body.
struct Enumerate<'a> {
    optimize: bool,
    max_elements: Option<u32>,
    mode: Mode,
    filter: Option<(&'a str, &'a Element<'a>)>,
    polymorphism: Option<&'a str>,
    expires: Option<Duration>,
}

fn read_enumerate<'a>(body: &'a Element<'a>) -> Result<Enumerate<'a>, Fault> {
    let mut e = Enumerate {
        optimize: false,
        max_elements: None,
        mode: Mode::Object,
        filter: None,
        polymorphism: None,
        expires: None,
    };
    for c in &body.children {
        let ns = c.namespace.as_deref().unwrap_or("");
        match (ns, c.local_name()) {
            (names::WSMAN, "OptimizeEnumeration") => e.optimize = true,
            (names::WSMAN, "MaxElements") => e.max_elements = Some(positive(c, "MaxElements")?),
            (names::WSMAN, "EnumerationMode") => {
                e.mode = match c.text.trim() {
                    "EnumerateEPR" => Mode::Epr,
                    "EnumerateObjectAndEPR" => Mode::ObjectAndEpr,
                    other => {
                        return Err(Fault::sender(
                            Subcode::UnsupportedFeature,
                            format!("EnumerationMode '{other}' is not supported; use EnumerateEPR or EnumerateObjectAndEPR"),
                        )
                        .with_detail("EnumerationMode"))
                    }
                }
            }
            (names::WSMAN, "Filter") | (names::WSEN, "Filter") => {
                let dialect = c.attr("Dialect").unwrap_or(names::dialect::XPATH);
                e.filter = Some((dialect, c));
            }
            (names::WSMB, "PolymorphismMode") => e.polymorphism = Some(c.text.trim()),
            (names::WSEN, "Expires") => e.expires = Some(expiration(c)?),
            (names::WSEN, "EndTo") => {
                return Err(Fault::sender(
                    Subcode::UnsupportedFeature,
                    "wsen:EndTo is not supported: an enumeration's end is reported by Pull",
                ))
            }
            _ => {}
        }
    }
    Ok(e)
}

fn positive(e: &Element, what: &str) -> Result<u32, Fault> {
    e.text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Fault::schema(format!(
                "{what} '{}' is not a positive integer",
                e.text.trim()
            ))
        })
}

/// An xs:duration, or an xs:dateTime in the future, as a time from now.
fn expiration(e: &Element) -> Result<Duration, Fault> {
    wscim::parse_duration(&e.text).ok_or_else(|| {
        Fault::sender(
            Subcode::InvalidExpirationTime,
            format!("wsen:Expires '{}' is not a duration", e.text.trim()),
        )
    })
}

fn context_timeout(call: &Call<'_>, expires: Option<Duration>) -> Result<Option<u32>, Fault> {
    let Some(d) = expires else { return Ok(None) };
    let secs = u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(u32::MAX);
    call.cimom
        .pulls()
        .timeout(Some(secs.max(1)))
        .map_err(|e| Fault::sender(Subcode::InvalidExpirationTime, e.description))?;
    Ok(Some(secs.max(1)))
}

fn contains_like(e: &Expr) -> bool {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => contains_like(a) || contains_like(b),
        Expr::Not(a) => contains_like(a),
        Expr::Like { .. } => true,
        _ => false,
    }
}

/// The query text of a WQL or CQL filter. CQL is accepted in the basic form it shares
/// with WQL; its regular-expression LIKE is refused rather than read as WQL's.
pub(super) fn query_filter(dialect: &str, filter: &Element) -> Result<String, Fault> {
    let text = filter.text.trim().to_string();
    if dialect == names::dialect::CQL {
        let query = Query::parse(Language::Wql, &text).map_err(|e| {
            Fault::sender(
                Subcode::CannotProcessFilter,
                format!("CQL: {}", e.description),
            )
        })?;
        if query.condition.as_ref().is_some_and(contains_like) {
            return Err(Fault::sender(
                Subcode::CannotProcessFilter,
                "CQL LIKE (DSP0202 regular expressions) is not supported; use the WQL dialect",
            ));
        }
    }
    Ok(text)
}

fn dialect_unavailable(dialect: &str) -> Fault {
    let mut f = Fault::sender(
        Subcode::FilterDialectRequestedUnavailable,
        format!("filter dialect '{dialect}' is not supported"),
    );
    for d in names::dialect::ENUMERATE {
        f.detail_xml.push_str("<wsen:SupportedDialect>");
        f.detail_xml.push_str(d);
        f.detail_xml.push_str("</wsen:SupportedDialect>");
    }
    f
}

/// The association filter: the operation it asks for.
fn association(
    call: &Call<'_>,
    filter: &Element,
    default_ns: &str,
    open: OpenOptions,
) -> Result<(String, Operation), Fault> {
    let (associators, f) = match (
        filter.child_ns(names::WSMB, "AssociatedInstances"),
        filter.child_ns(names::WSMB, "AssociationInstances"),
    ) {
        (Some(f), None) => (true, f),
        (None, Some(f)) => (false, f),
        _ => return Err(Fault::sender(
            Subcode::CannotProcessFilter,
            "an association filter holds one wsmb:AssociatedInstances or wsmb:AssociationInstances",
        )),
    };
    let object = f.child_ns(names::WSMB, "Object").ok_or_else(|| {
        Fault::sender(
            Subcode::CannotProcessFilter,
            "the association filter has no wsmb:Object",
        )
    })?;
    let path = wscim::read_epr(object)?;
    let ns = match &path.namespace {
        Some(ns) => call.cimom.resolve_namespace(ns)?,
        None => default_ns.to_string(),
    };
    let schema = call.cimom.schema();
    let keys: Vec<_> = path
        .keys
        .iter()
        .map(|k| (k.name.to_string(), k.value.clone()))
        .collect();
    let class = resource::addressed_class(&schema, &ns, path.class_name.as_str(), &keys)?;
    let object = resource::instance_path(class, keys)?;
    let name = |local: &str| {
        f.child_ns(names::WSMB, local)
            .map(|e| Name::from(e.text.trim()))
    };
    let result_properties: Vec<Name> = f
        .children_ns(names::WSMB, "IncludeResultProperty")
        .map(|e| Name::from(e.text.trim()))
        .collect();
    let options = InstanceOptions {
        property_list: (!result_properties.is_empty()).then_some(result_properties),
        ..Default::default()
    };
    let op = if associators {
        Operation::OpenAssociatorInstances {
            object,
            filter: AssociationFilter {
                assoc_class: name("AssociationClassName"),
                result_class: name("ResultClassName"),
                role: name("Role"),
                result_role: name("ResultRole"),
            },
            options,
            open,
        }
    } else {
        Operation::OpenReferenceInstances {
            object,
            filter: AssociationFilter {
                assoc_class: name("ResultClassName"),
                role: name("Role"),
                ..Default::default()
            },
            options,
            open,
        }
    };
    Ok((ns, op))
}

/// WS-Enumeration Enumerate.
pub async fn enumerate(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = call
        .request
        .body
        .as_ref()
        .filter(|b| b.is(names::WSEN, "Enumerate"))
        .ok_or_else(|| Fault::schema("the body of Enumerate is not a wsen:Enumerate"))?;
    let e = read_enumerate(body)?;
    let resource = call.resource()?;
    let uri_ns = match &resource {
        Resource::Class { namespace, .. } => namespace.as_deref(),
        Resource::AllClasses => None,
    };
    let namespace = call.namespace(uri_ns)?;
    // Nothing is read at open: the items are taken by `batch`, which fits them to the
    // envelope.
    let open = OpenOptions {
        operation_timeout: context_timeout(call, e.expires)?,
        max_object_count: 0,
        ..Default::default()
    };
    let class_name = match &resource {
        Resource::Class { name, .. } => Some(name.clone()),
        Resource::AllClasses => None,
    };
    let need_class = || {
        class_name.clone().ok_or_else(|| {
            Fault::sender(
                Subcode::UnsupportedFeature,
                "enumerating all classes needs a WQL, CQL or association filter",
            )
            .with_detail("FilteringRequired")
        })
    };
    let schema = call.cimom.schema();
    let mut state = State {
        namespace: namespace.clone(),
        mode: e.mode,
        exact_class: None,
        as_class: None,
        selectors: Vec::new(),
        form: ResultForm::InstanceWithPath,
        count: None,
        total: Default::default(),
    };
    let plain = |class: String, open: OpenOptions| Operation::OpenEnumerateInstances {
        class: class.into(),
        options: InstanceOptions::default(),
        open,
    };
    let (namespace, op) = match e.filter {
        None => {
            let class = need_class()?;
            (namespace, plain(class, open))
        }
        Some((d, f)) if d == names::dialect::SELECTOR => {
            let class = need_class()?;
            let set = f.child_ns(names::WSMAN, "SelectorSet").ok_or_else(|| {
                Fault::sender(
                    Subcode::CannotProcessFilter,
                    "the selector filter has no wsman:SelectorSet",
                )
            })?;
            let (_, keys) = resource::split_namespace(resource::read_selectors(set)?);
            state.selectors = keys;
            (namespace, plain(class, open))
        }
        Some((d, f))
            if d == names::dialect::WQL_MICROSOFT
                || d == names::dialect::WQL_DMTF
                || d == names::dialect::CQL =>
        {
            let query = query_filter(d, f)?;
            (
                namespace,
                Operation::OpenQueryInstances {
                    language: "WQL".into(),
                    query,
                    return_query_result_class: false,
                    open,
                },
            )
        }
        Some((d, f)) if d == names::dialect::ASSOCIATION => {
            let (ns, op) = association(call, f, &namespace, open)?;
            state.namespace = ns.clone();
            (ns, op)
        }
        Some((d, _)) => return Err(dialect_unavailable(d)),
    };
    if let (Some(mode), Some(class)) = (e.polymorphism, &class_name) {
        match mode {
            "IncludeSubClassProperties" => {}
            "None" => state.exact_class = resource::class_name(&schema, &namespace, class),
            "ExcludeSubClassProperties" => {
                state.as_class = schema.class(&namespace, class).ok().cloned()
            }
            other => {
                return Err(Fault::sender(
                    Subcode::PolymorphismModeNotSupported,
                    format!("PolymorphismMode '{other}' is not supported"),
                ))
            }
        }
    }
    // EPRs need no instances; neither does counting.
    let paths = paths_form(&op);
    state.count = Some(paths.clone());
    let op = match e.mode {
        Mode::Epr => paths,
        Mode::Object | Mode::ObjectAndEpr => op,
    };
    // Counted before the enumeration opens, so a failure leaves no context behind.
    let estimate = match call.request.request_estimate {
        true => Some(total(call, &state).await?),
        false => None,
    };
    let outcome = call.execute(&namespace, op, "Enumerate").await?;
    let Outcome::Pull(result) = outcome else {
        return Err(Fault::receiver(
            Subcode::InternalError,
            "Enumerate opened no enumeration",
        ));
    };
    state.form = result.form;
    let state = Arc::new(state);
    let mut body = String::from("<wsen:EnumerateResponse>");
    // Opened with MaxObjectCount 0, an enumeration always has a context: it cannot have
    // ended before anything was read.
    let context = result.context.ok_or_else(|| {
        Fault::receiver(
            Subcode::InternalError,
            "Enumerate opened no enumeration context",
        )
    })?;
    call.cimom
        .pulls()
        .attach(&context, &call.ctx.user, state.clone())?;
    let mut items = String::new();
    let mut ended = false;
    if e.optimize {
        let max = e.max_elements.unwrap_or(1).min(call.config.max_elements);
        ended = batch(call, &context, &state, max, &mut items).await?;
    }
    body.reserve(items.len() + 256);
    if ended && !call.request.winrm_client {
        // The context is closed. The element is required, and empty it tells clients
        // that pull while a response names a context (wsl, openwsman's) that there is
        // nothing to pull, as openwsman's and OpenPegasus's servers answer. WinRM
        // refuses an empty one (OpenPegasus names the context for it in its SCX build)
        // and stops at EndOfSequence, so its clients get the name.
        body.push_str("<wsen:EnumerationContext/>");
    } else {
        body.push_str("<wsen:EnumerationContext>");
        text(&mut body, &context);
        body.push_str("</wsen:EnumerationContext>");
    }
    if e.optimize {
        body.push_str("<wsman:Items>");
        body.push_str(&items);
        body.push_str("</wsman:Items>");
        if ended {
            body.push_str("<wsman:EndOfSequence/>");
        }
    }
    body.push_str("</wsen:EnumerateResponse>");
    let mut reply = Reply::new(format!("{}Response", names::action::ENUMERATE), body);
    if let Some(n) = estimate {
        reply.headers = estimate_header(n);
    }
    Ok(reply)
}

fn estimate_header(n: u64) -> String {
    format!("<wsman:TotalItemsCountEstimate>{n}</wsman:TotalItemsCountEstimate>")
}

/// The operation that enumerates the same items as `op` with paths only, where one
/// exists (a query has none).
fn paths_form(op: &Operation) -> Operation {
    match op.clone() {
        Operation::OpenEnumerateInstances { class, open, .. } => {
            Operation::OpenEnumerateInstancePaths { class, open }
        }
        Operation::OpenReferenceInstances {
            object,
            filter,
            open,
            ..
        } => Operation::OpenReferenceInstancePaths {
            object,
            filter,
            open,
        },
        Operation::OpenAssociatorInstances {
            object,
            filter,
            open,
            ..
        } => Operation::OpenAssociatorInstancePaths {
            object,
            filter,
            open,
        },
        op => op,
    }
}

/// The number of items the enumeration has in all (TotalItemsCountEstimate): the
/// enumeration is run again, through the same filters, and counted. It is counted once,
/// when a client first asks, and kept with the context.
async fn total(call: &Call<'_>, state: &State) -> Result<u64, Fault> {
    if let Some(n) = *crate::lock(&state.total) {
        return Ok(n);
    }
    let op = state.count.clone().ok_or_else(|| {
        Fault::receiver(Subcode::InternalError, "the enumeration cannot be counted")
    })?;
    let Outcome::Pull(opened) = call.execute(&state.namespace, op, "Enumerate").await? else {
        return Err(Fault::receiver(
            Subcode::InternalError,
            "counting opened no enumeration",
        ));
    };
    let mut n = 0u64;
    if let Some(context) = opened.context {
        // Every item is counted and dropped, so the whole enumeration is read in one pull.
        let mut admit = |item: &Item| {
            if state.admits_item(item) {
                n += 1;
            }
            Admit::Skip
        };
        call.cimom
            .pulls()
            .pull_admitting(
                &context,
                &call.ctx.user,
                &state.namespace,
                opened.form,
                u32::MAX,
                &mut admit,
            )
            .await?;
    }
    *crate::lock(&state.total) = Some(n);
    Ok(n)
}

/// Pulls up to `max` items that fit the envelope into `out`; returns whether the
/// enumeration ended.
async fn batch(
    call: &Call<'_>,
    context: &str,
    state: &State,
    max: u32,
    out: &mut String,
) -> Result<bool, Fault> {
    let budget = call.max_envelope_size().saturating_sub(ENVELOPE_OVERHEAD);
    let mut too_big = false;
    out.reserve(budget.min(64 * 1024));
    let mut admit = |item: &Item| {
        // Written in place and cut back if it does not fit: no copy per item.
        let mark = out.len();
        if state.write(out, item).is_none() {
            return Admit::Skip;
        }
        if out.len() > budget {
            out.truncate(mark);
            too_big = true;
            return Admit::Stop;
        }
        Admit::Take
    };
    let (items, ended) = call
        .cimom
        .pulls()
        .pull_admitting(
            context,
            &call.ctx.user,
            &state.namespace,
            state.form,
            max,
            &mut admit,
        )
        .await?;
    if items.is_empty() && too_big {
        return Err(Fault::sender(
            Subcode::EncodingLimit,
            format!(
                "the next item does not fit in MaxEnvelopeSize {}",
                call.max_envelope_size()
            ),
        )
        .with_detail("MaxEnvelopeSize"));
    }
    Ok(ended)
}

/// The enumeration context an element names, with its WS-Man state.
fn context_of(call: &Call<'_>, body: &Element) -> Result<(String, Arc<State>), Fault> {
    let id = body
        .child_ns(names::WSEN, "EnumerationContext")
        .map(|c| c.text.trim().to_string())
        .ok_or_else(|| Fault::schema("the request has no wsen:EnumerationContext"))?;
    let invalid = || {
        Fault::from(CimError::new(
            StatusCode::InvalidEnumerationContext,
            format!("enumeration context '{id}' is unknown, released or expired"),
        ))
    };
    let (_, attachment) = call
        .cimom
        .pulls()
        .attachment(&id, &call.ctx.user)
        .map_err(|_| invalid())?;
    let state = attachment
        .and_then(|a| a.downcast::<State>().ok())
        .ok_or_else(invalid)?;
    Ok((id, state))
}

fn body_named<'a>(call: &'a Call<'_>, local: &str) -> Result<&'a Element<'a>, Fault> {
    call.body_named(names::WSEN, "wsen", local)
}

/// WS-Enumeration Pull.
pub async fn pull(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = body_named(call, "Pull")?;
    let (id, state) = context_of(call, body)?;
    // python-dracclient puts MaxElements in the wsman namespace.
    let max = match body
        .child_ns(names::WSEN, "MaxElements")
        .or_else(|| body.child_ns(names::WSMAN, "MaxElements"))
    {
        Some(e) => positive(e, "MaxElements")?,
        None => 1,
    }
    .min(call.config.max_elements);
    let mut items = String::new();
    let ended = batch(call, &id, &state, max, &mut items).await?;
    let mut out = String::with_capacity(items.len() + 256);
    out.push_str("<wsen:PullResponse>");
    if !ended {
        out.push_str("<wsen:EnumerationContext>");
        text(&mut out, &id);
        out.push_str("</wsen:EnumerationContext>");
    }
    out.push_str("<wsen:Items>");
    out.push_str(&items);
    out.push_str("</wsen:Items>");
    if ended {
        out.push_str("<wsen:EndOfSequence/>");
    }
    out.push_str("</wsen:PullResponse>");
    let mut reply = Reply::new(format!("{}Response", names::action::PULL), out);
    if call.request.request_estimate {
        reply.headers = estimate_header(total(call, &state).await?);
    }
    Ok(reply)
}

/// WS-Enumeration Release.
pub async fn release(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = body_named(call, "Release")?;
    let (id, state) = context_of(call, body)?;
    call.cimom
        .pulls()
        .close(&id, &call.ctx.user, &state.namespace)?;
    Ok(Reply::new(
        format!("{}Response", names::action::RELEASE),
        String::new(),
    ))
}

fn expires_element(d: Duration) -> String {
    format!("<wsen:Expires>{}</wsen:Expires>", wscim::xs_seconds(d))
}

/// WS-Enumeration Renew: restarts the context's expiry, with a new one if given.
pub async fn renew(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = body_named(call, "Renew")?;
    let (id, _) = context_of(call, body)?;
    let pulls = call.cimom.pulls();
    let timeout = match body.child_ns(names::WSEN, "Expires") {
        Some(e) => {
            let secs = context_timeout(call, Some(expiration(e)?))?;
            pulls.timeout(secs)?
        }
        None => pulls
            .remaining(&id, &call.ctx.user)?
            .max(pulls.timeout(None)?),
    };
    pulls.renew(&id, &call.ctx.user, timeout)?;
    let mut out = String::from("<wsen:RenewResponse>");
    out.push_str(&expires_element(timeout));
    out.push_str("<wsen:EnumerationContext>");
    text(&mut out, &id);
    out.push_str("</wsen:EnumerationContext></wsen:RenewResponse>");
    Ok(Reply::new(format!("{}Response", names::action::RENEW), out))
}

/// WS-Enumeration GetStatus: when the context expires.
pub async fn get_status(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = body_named(call, "GetStatus")?;
    let (id, _) = context_of(call, body)?;
    let left = call.cimom.pulls().remaining(&id, &call.ctx.user)?;
    let mut out = String::from("<wsen:GetStatusResponse>");
    out.push_str(&expires_element(left));
    out.push_str("</wsen:GetStatusResponse>");
    Ok(Reply::new(
        format!("{}Response", names::action::GET_STATUS),
        out,
    ))
}
