//! ExecQuery and the pull enumerations (Open..., Pull..., EnumerationCount and
//! CloseEnumeration go straight to the contexts).

use std::sync::Arc;

use cim_schema::{Class, Name};

use super::operation::{InstanceOptions, OpenOptions};
use super::query::{Language, Query};
use super::result::{ClassItem, ItemStream, Outcome, PullResult, ResultForm};
use super::{Cimom, RequestContext};
use crate::cimxml::encode::ClassFilter;
use crate::error::{CimError, CimResult, StatusCode};

impl Cimom {
    /// Parses a query and checks it against the schema: the FROM class exists and has
    /// every property named.
    pub(super) fn prepare_query(
        &self,
        ns: &str,
        language: Language,
        text: &str,
        class: Option<&Class>,
    ) -> CimResult<(Arc<Query>, Option<Arc<Class>>)> {
        let query = Query::parse(language, text)?;
        let schema = self.schema();
        let from = match &query.from {
            Some(name) => Some(Self::class_of(&schema, ns, name.as_str()).map_err(|_| {
                CimError::new(
                    StatusCode::InvalidQuery,
                    format!("invalid query: class {name} does not exist in namespace {ns}"),
                )
            })?),
            None => None,
        };
        if let Some(c) = from.as_deref().or(class) {
            if let Some(p) = query
                .properties()
                .into_iter()
                .find(|p| c.property(p.as_str()).is_none())
            {
                return Err(CimError::new(
                    StatusCode::InvalidQuery,
                    format!("invalid query: class {} has no property {p}", c.name),
                ));
            }
        }
        Ok((Arc::new(query), from))
    }

    pub(super) fn exec_query(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        language: &str,
        text: &str,
    ) -> CimResult<Outcome> {
        if Language::parse(language)? != Language::Wql {
            return Err(CimError::new(
                StatusCode::QueryLanguageNotSupported,
                format!("ExecQuery supports WQL, not {language}"),
            ));
        }
        let (query, from) = self.prepare_query(ns, Language::Wql, text, None)?;
        let class = from.expect("WQL has a FROM class");
        let options = InstanceOptions {
            property_list: query.select.clone(),
            ..Default::default()
        };
        let pctx = self.provider_context(ctx, ns);
        let stream = self.spawn_enumeration(pctx, class, options, false, Some(query));
        Ok(Outcome::Stream(stream, ResultForm::ObjectWithPath))
    }

    /// Parses the filter of an Open... operation.
    pub(super) fn open_filter(
        &self,
        ns: &str,
        open: &OpenOptions,
        class: Option<&Class>,
    ) -> CimResult<Option<Arc<Query>>> {
        match &open.filter {
            None => Ok(None),
            Some(f) => {
                let language = Language::parse(&f.language)?;
                Ok(Some(self.prepare_query(ns, language, &f.query, class)?.0))
            }
        }
    }

    /// Opens a pull enumeration over `stream` and returns its first batch.
    pub(super) async fn open_stream(
        &self,
        ctx: &RequestContext,
        ns: &str,
        stream: ItemStream,
        form: ResultForm,
        open: &OpenOptions,
        query_result_class: Option<ClassItem>,
    ) -> CimResult<Outcome> {
        let timeout = self.pulls.timeout(open.operation_timeout)?;
        let id = self.pulls.open(&ctx.user, ns, form, stream, timeout)?;
        let (items, end) = self
            .pulls
            .pull(&id, &ctx.user, ns, form, open.max_object_count)
            .await?;
        Ok(Outcome::Pull(PullResult {
            items,
            form,
            context: (!end).then_some(id),
            query_result_class,
        }))
    }

    pub(super) fn check_open(&self, open: &OpenOptions) -> CimResult<()> {
        if open.continue_on_error {
            return Err(CimError::new(
                StatusCode::ContinuationOnErrorNotSupported,
                "ContinueOnError is not supported: an enumeration ends at its first error",
            ));
        }
        self.pulls.timeout(open.operation_timeout)?;
        self.pulls.check_max_object_count(open.max_object_count)
    }

    pub(super) async fn open_enumerate(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        class: &Name,
        options: InstanceOptions,
        open: OpenOptions,
        paths: bool,
    ) -> CimResult<Outcome> {
        self.check_open(&open)?;
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, class.as_str())?;
        let query = self.open_filter(ns, &open, Some(&class))?;
        let stream = self.spawn_enumeration(pctx, class, options, paths, query);
        let form = if paths {
            ResultForm::InstancePath
        } else {
            ResultForm::InstanceWithPath
        };
        self.open_stream(ctx, ns, stream, form, &open, None).await
    }

    pub(super) async fn open_query(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        language: &str,
        text: &str,
        return_class: bool,
        open: OpenOptions,
    ) -> CimResult<Outcome> {
        self.check_open(&open)?;
        let language = Language::parse(language)?;
        if language != Language::Wql {
            return Err(CimError::new(
                StatusCode::QueryLanguageNotSupported,
                "OpenQueryInstances supports WQL; DMTF:FQL is a filter language without FROM",
            ));
        }
        let (query, from) = self.prepare_query(ns, language, text, None)?;
        let class = from.expect("WQL has a FROM class");
        let options = InstanceOptions {
            property_list: query.select.clone(),
            ..Default::default()
        };
        let result_class = return_class.then(|| ClassItem {
            class: class.clone(),
            schema: self.schema(),
            namespace: ns.to_string(),
            filter: Arc::new(ClassFilter {
                local_only: false,
                include_qualifiers: true,
                include_class_origin: false,
                properties: query.select.clone().map(|l| l.into_iter().collect()),
            }),
        });
        let pctx = self.provider_context(ctx, ns);
        let stream = self.spawn_enumeration(pctx, class, options, false, Some(query));
        self.open_stream(
            ctx,
            ns,
            stream,
            ResultForm::Instance,
            &OpenOptions {
                filter: None,
                ..open
            },
            result_class,
        )
        .await
    }

    pub(super) async fn pull(
        &self,
        ctx: &RequestContext,
        ns: &str,
        context: &str,
        max: u32,
        form: ResultForm,
    ) -> CimResult<Outcome> {
        self.pulls.check_max_object_count(max)?;
        let (items, end) = self.pulls.pull(context, &ctx.user, ns, form, max).await?;
        Ok(Outcome::Pull(PullResult {
            items,
            form,
            context: (!end).then(|| context.to_string()),
            query_result_class: None,
        }))
    }
}
