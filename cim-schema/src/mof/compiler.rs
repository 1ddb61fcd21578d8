//! The MOF compiler: parses files (following includes), gives literals their types, and adds
//! qualifier declarations, classes and instances to a [`Repository`].
//!
//! Instances are created after every file has been read, so that an alias may be used
//! before the instance that defines it (DSP0221 allows forward references).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ast::*;
use super::diagnostic::{Diagnostic, Severity};
use super::parser::parse;
use super::source::{FileSystem, SourceProvider};
use crate::class::{Class, Method, Parameter, Property};
use crate::datetime::DateTime;
use crate::error::Error;
use crate::instance::{Instance, InstanceProperty};
use crate::name::{Name, NameMap};
use crate::path::{KeyBinding, ObjectPath};
use crate::qualifier::{Flavor, Qualifier, QualifierDecl, QualifierSet};
use crate::repository::Repository;
use crate::types::{Array, ArrayKind, ArraySize, CimType};
use crate::value::Value;

/// Deepest chain of `#pragma include`.
const MAX_INCLUDE_DEPTH: usize = 64;
/// Deepest embedding of instances through aliases.
const MAX_EMBED_DEPTH: usize = 32;
/// Compilation stops reporting after this many errors.
const MAX_ERRORS: usize = 100;

/// What one compilation added to the repository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Classes added.
    pub classes: usize,
    /// Qualifier declarations added or confirmed.
    pub qualifiers: usize,
    /// Instances created.
    pub instances: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} classes, {} qualifier declarations, {} instances",
            self.classes, self.qualifiers, self.instances
        )
    }
}

struct SourceFile {
    path: PathBuf,
    text: Arc<str>,
}

struct PendingInstance {
    decl: InstanceDecl,
    namespace: String,
    file: usize,
}

/// Compiles MOF into a repository. A failed compilation may leave what it added before the
/// first error in the repository; compile into a scratch repository to get all or nothing.
pub struct Compiler<'r> {
    repo: &'r mut Repository,
    sources: Box<dyn SourceProvider + 'r>,
    search_dirs: Vec<PathBuf>,
    namespace: String,
    files: Vec<SourceFile>,
    include_stack: Vec<PathBuf>,
    pending: Vec<PendingInstance>,
    diagnostics: Vec<Diagnostic>,
    summary: Summary,
    /// Qualifier declarations of one namespace; see `qualifier_decls`.
    decl_cache: Option<(String, NameMap<QualifierDecl>)>,
}

impl<'r> Compiler<'r> {
    /// A compiler that reads from the file system and starts in namespace `namespace`.
    pub fn new(repo: &'r mut Repository, namespace: &str) -> Self {
        Compiler {
            repo,
            sources: Box::new(FileSystem),
            search_dirs: Vec::new(),
            namespace: namespace.trim_matches('/').to_string(),
            files: Vec::new(),
            include_stack: Vec::new(),
            pending: Vec::new(),
            diagnostics: Vec::new(),
            summary: Summary::default(),
            decl_cache: None,
        }
    }

    /// Reads files through `sources` instead of the file system.
    pub fn with_sources(mut self, sources: impl SourceProvider + 'r) -> Self {
        self.sources = Box::new(sources);
        self
    }

    /// Adds a directory where `#pragma include` looks after the including file's directory.
    pub fn include_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.search_dirs.push(dir.into());
        self
    }

    /// Compiles files in order, then creates their instances. Returns what was added, or
    /// every error (and warning) found.
    pub fn compile_files<P: AsRef<Path>>(
        mut self,
        files: &[P],
    ) -> Result<(Summary, Vec<Diagnostic>), Vec<Diagnostic>> {
        for f in files {
            self.compile_path(f.as_ref(), None);
        }
        self.finish()
    }

    /// Compiles MOF text given directly; `name` is used in messages and to resolve includes.
    pub fn compile_str(
        mut self,
        name: &str,
        text: &str,
    ) -> Result<(Summary, Vec<Diagnostic>), Vec<Diagnostic>> {
        self.compile_text(PathBuf::from(name), Arc::from(text));
        self.finish()
    }

    fn finish(mut self) -> Result<(Summary, Vec<Diagnostic>), Vec<Diagnostic>> {
        self.create_instances();
        // Syntax errors are found before the semantic ones of the same file; report them
        // in source order, files in the order they first had something to say.
        let mut file_order: Vec<PathBuf> = Vec::new();
        for d in &self.diagnostics {
            if !file_order.contains(&d.file) {
                file_order.push(d.file.clone());
            }
        }
        let rank = |d: &Diagnostic| file_order.iter().position(|f| *f == d.file);
        // Messages about a file as a whole (line 0, "too many errors") close its list.
        let line = |d: &Diagnostic| if d.line == 0 { usize::MAX } else { d.line };
        self.diagnostics
            .sort_by_key(|d| (rank(d), line(d), d.column));
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            Err(self.diagnostics)
        } else {
            Ok((self.summary, self.diagnostics))
        }
    }

    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn report(&mut self, severity: Severity, file: usize, offset: u32, message: String) {
        if severity == Severity::Error && self.error_count() == MAX_ERRORS {
            let f = &self.files[file];
            self.diagnostics.push(Diagnostic::file(
                Severity::Error,
                f.path.clone(),
                "too many errors; stopping".into(),
            ));
        }
        if self.error_count() > MAX_ERRORS {
            return;
        }
        let f = &self.files[file];
        self.diagnostics.push(Diagnostic::at(
            severity,
            f.path.clone(),
            &f.text,
            offset as usize,
            message,
        ));
    }

    fn error(&mut self, file: usize, span: Span, message: impl Into<String>) {
        self.report(Severity::Error, file, span.start, message.into());
    }

    /// Reads and compiles one file; `from` is the include site, for messages.
    fn compile_path(&mut self, path: &Path, from: Option<(usize, Span)>) {
        let identity = self.sources.identity(path);
        let complain = |this: &mut Self, message: String| match from {
            Some((file, span)) => this.error(file, span, message),
            None => this.diagnostics.push(Diagnostic::file(
                Severity::Error,
                path.to_path_buf(),
                message,
            )),
        };
        if self.include_stack.contains(&identity) {
            let chain: Vec<String> = self
                .include_stack
                .iter()
                .chain([&identity])
                .map(|p| p.display().to_string())
                .collect();
            return complain(self, format!("include cycle: {}", chain.join(" -> ")));
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return complain(
                self,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files"),
            );
        }
        let text = match self.sources.read(path) {
            Ok(t) => t,
            Err(e) => return complain(self, format!("cannot read {}: {e}", path.display())),
        };
        if text.len() >= u32::MAX as usize {
            return complain(
                self,
                format!("{} is too large (4 GiB at most)", path.display()),
            );
        }
        self.include_stack.push(identity);
        self.compile_text(path.to_path_buf(), Arc::from(text));
        self.include_stack.pop();
    }

    fn compile_text(&mut self, path: PathBuf, text: Arc<str>) {
        let file = self.files.len();
        self.files.push(SourceFile {
            path,
            text: text.clone(),
        });
        let (productions, errors) = parse(&text);
        for e in errors {
            self.error(file, e.span, e.message);
        }
        for p in productions {
            if self.error_count() > MAX_ERRORS {
                return;
            }
            match p {
                Production::Pragma(p) => self.pragma(file, p),
                Production::Qualifier(q) => self.qualifier_decl(file, q),
                Production::Class(c) => self.class(file, c),
                Production::Instance(decl) => self.pending.push(PendingInstance {
                    decl,
                    namespace: self.namespace.clone(),
                    file,
                }),
            }
        }
    }

    fn pragma(&mut self, file: usize, p: Pragma) {
        match p.name.name.to_ascii_lowercase().as_str() {
            "include" => {
                let Some(path) = self.resolve_include(file, &p.value) else {
                    let dirs: Vec<String> = self
                        .search_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect();
                    let searched = if dirs.is_empty() {
                        String::new()
                    } else {
                        format!(" or in {}", dirs.join(", "))
                    };
                    return self.error(
                        file,
                        p.name.span,
                        format!(
                            "included file '{}' not found beside {}{searched}",
                            p.value,
                            self.files[file].path.display()
                        ),
                    );
                };
                self.compile_path(&path, Some((file, p.name.span)));
            }
            "namespace" => {
                let ns = p.value.trim_matches('/');
                if ns.is_empty()
                    || !ns.split('/').all(|seg| {
                        !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_')
                    })
                {
                    return self.error(
                        file,
                        p.name.span,
                        format!("'{}' is not a namespace name", p.value),
                    );
                }
                self.namespace = ns.to_string();
            }
            // Accepted with no effect: the compiler keeps the strings it is given.
            "locale" | "instancelocale" | "nonlocal" | "nonlocaltype" | "source" | "sourcetype"
            | "comment" => {}
            other => self.report(
                Severity::Warning,
                file,
                p.name.span.start,
                format!("unknown pragma '{other}' ignored"),
            ),
        }
    }

    fn resolve_include(&self, file: usize, name: &str) -> Option<PathBuf> {
        let here = self.files[file]
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        std::iter::once(here)
            .chain(self.search_dirs.iter().cloned())
            .map(|dir| dir.join(name))
            .find(|p| self.sources.exists(p))
    }

    fn qualifier_decl(&mut self, file: usize, q: QualifierDeclAst) {
        let mut flavor = Flavor::default();
        for k in &q.flavors {
            k.apply(&mut flavor);
        }
        let array = q.array.map(array_of);
        let default = match &q.default {
            None => None,
            Some((lit, span)) => match self.literal(lit, q.ty, array.is_some()) {
                Ok(v) => v,
                Err(msg) => {
                    return self.error(
                        file,
                        *span,
                        format!("default of qualifier {}: {msg}", q.name.name),
                    )
                }
            },
        };
        let decl = QualifierDecl {
            name: Name::new(&q.name.name),
            ty: q.ty,
            array,
            default,
            scope: q.scope,
            flavor,
        };
        let ns = self.namespace.clone();
        self.decl_cache = None;
        match self.repo.set_qualifier(&ns, decl) {
            Ok(()) => self.summary.qualifiers += 1,
            Err(e) => self.error(file, q.name.span, e.to_string()),
        }
    }

    /// The qualifier declarations of the current namespace. Every qualifier use needs one,
    /// so they are copied once per namespace change instead of looked up through the
    /// repository each time.
    fn qualifier_decls(&mut self) -> &NameMap<QualifierDecl> {
        let stale = self
            .decl_cache
            .as_ref()
            .is_none_or(|(ns, _)| *ns != self.namespace);
        if stale {
            let decls = self
                .repo
                .namespace(&self.namespace)
                .map(|ns| {
                    ns.qualifiers()
                        .map(|d| (d.name.clone(), d.clone()))
                        .collect()
                })
                .unwrap_or_default();
            self.decl_cache = Some((self.namespace.clone(), decls));
        }
        &self.decl_cache.as_ref().expect("filled above").1
    }

    /// Gives a qualifier its declared type and flavor.
    fn qualifier(&mut self, file: usize, q: &QualifierUse) -> Option<Qualifier> {
        let Some(decl) = self.qualifier_decls().get(&q.name.name) else {
            self.error(
                file,
                q.name.span,
                format!(
                    "qualifier '{}' is not declared in namespace {}",
                    q.name.name, self.namespace
                ),
            );
            return None;
        };
        let mut flavor = decl.flavor;
        for k in &q.flavors {
            k.apply(&mut flavor);
        }
        let (name, ty, is_array) = (decl.name.clone(), decl.ty, decl.array.is_some());
        let value = match &q.value {
            None if ty == CimType::Boolean && !is_array => Some(Value::Boolean(true)),
            None => {
                self.error(
                    file,
                    q.name.span,
                    format!(
                        "qualifier '{name}' needs a value of type {}",
                        type_name(ty, is_array)
                    ),
                );
                return None;
            }
            Some((lit, span)) => match self.literal(lit, ty, is_array) {
                Ok(v) => v,
                Err(msg) => {
                    self.error(file, *span, format!("qualifier '{name}': {msg}"));
                    return None;
                }
            },
        };
        // Keep the spelling used in the schema's declaration.
        Some(Qualifier {
            name,
            value,
            flavor,
            propagated: false,
        })
    }

    fn qualifiers(&mut self, file: usize, uses: &[QualifierUse]) -> Option<QualifierSet> {
        let mut set = QualifierSet::new();
        let mut ok = true;
        for q in uses {
            if set.get(&q.name.name).is_some() {
                self.error(
                    file,
                    q.name.span,
                    format!("qualifier '{}' is given twice", q.name.name),
                );
                ok = false;
                continue;
            }
            match self.qualifier(file, q) {
                Some(q) => set.insert(q),
                None => ok = false,
            }
        }
        ok.then_some(set)
    }

    fn class(&mut self, file: usize, c: ClassDecl) {
        let Some(declared) = self.declared_class(file, &c) else {
            return;
        };
        let ns = self.namespace.clone();
        self.repo.create_namespace(&ns);
        match self.repo.add_class(&ns, declared) {
            Ok(_) => self.summary.classes += 1,
            Err(e) => {
                let span = locate(&c, &e);
                self.error(file, span, e.to_string());
            }
        }
    }

    /// The class as declared: its own qualifiers and features, typed.
    fn declared_class(&mut self, file: usize, c: &ClassDecl) -> Option<Class> {
        let class_name = Name::new(&c.name.name);
        let mut class = Class::new(
            class_name.clone(),
            c.superclass.as_ref().map(|s| Name::new(&s.name)),
        );
        class.qualifiers = self.qualifiers(file, &c.qualifiers)?;
        let mut ok = true;
        for f in &c.features {
            match f {
                Feature::Property(p) => {
                    let Some(qualifiers) = self.qualifiers(file, &p.qualifiers) else {
                        ok = false;
                        continue;
                    };
                    let (ty, reference_class) = split_type(&p.ty);
                    let array = p.array.map(|a| with_kind(array_of(a), &qualifiers));
                    let default = match &p.default {
                        None => None,
                        Some((lit, span)) => match self.literal(lit, ty, array.is_some()) {
                            Ok(v) => v,
                            Err(msg) => {
                                self.error(
                                    file,
                                    *span,
                                    format!("default of {}.{}: {msg}", c.name.name, p.name.name),
                                );
                                ok = false;
                                continue;
                            }
                        },
                    };
                    let prop = Property {
                        name: Name::new(&p.name.name),
                        ty,
                        array,
                        reference_class,
                        default,
                        qualifiers,
                        class_origin: class_name.clone(),
                        propagated: false,
                    };
                    if class
                        .properties
                        .insert(prop.name.clone(), Arc::new(prop))
                        .is_some()
                    {
                        self.error(
                            file,
                            p.name.span,
                            format!("property {}.{} is declared twice", c.name.name, p.name.name),
                        );
                        ok = false;
                    }
                }
                Feature::Method(m) => {
                    let Some(qualifiers) = self.qualifiers(file, &m.qualifiers) else {
                        ok = false;
                        continue;
                    };
                    let mut parameters = NameMap::new();
                    for param in &m.parameters {
                        let Some(qualifiers) = self.qualifiers(file, &param.qualifiers) else {
                            ok = false;
                            continue;
                        };
                        let (ty, reference_class) = split_type(&param.ty);
                        let array = param.array.map(|a| with_kind(array_of(a), &qualifiers));
                        let name = Name::new(&param.name.name);
                        let parameter = Parameter {
                            name: name.clone(),
                            ty,
                            array,
                            reference_class,
                            qualifiers,
                        };
                        if parameters.insert(name, parameter).is_some() {
                            self.error(
                                file,
                                param.name.span,
                                format!(
                                    "parameter {} of {}.{} is declared twice",
                                    param.name.name, c.name.name, m.name.name
                                ),
                            );
                            ok = false;
                        }
                    }
                    let (return_type, _) = split_type(&m.return_type);
                    let method = Method {
                        name: Name::new(&m.name.name),
                        return_type,
                        parameters,
                        qualifiers,
                        class_origin: class_name.clone(),
                        propagated: false,
                    };
                    if class
                        .methods
                        .insert(method.name.clone(), Arc::new(method))
                        .is_some()
                    {
                        self.error(
                            file,
                            m.name.span,
                            format!("method {}.{} is declared twice", c.name.name, m.name.name),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(class)
    }

    /// Converts a literal with no aliases or instances allowed (class and qualifier values).
    fn literal(
        &self,
        lit: &Literal,
        ty: CimType,
        is_array: bool,
    ) -> Result<Option<Value>, ValueError> {
        Converter {
            repo: self.repo,
            namespace: &self.namespace,
            aliases: None,
            depth: 0,
        }
        .convert(lit, ty, is_array, None)
    }

    /// Creates the instances collected from every file, resolving aliases first.
    fn create_instances(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut aliases: HashMap<String, usize> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            if let Some(a) = &p.decl.alias {
                if aliases.insert(a.name.to_ascii_lowercase(), i).is_some() {
                    self.error(
                        p.file,
                        a.span,
                        format!("alias ${} is defined twice", a.name),
                    );
                }
            }
        }
        // Paths first, repeatedly, since a key may refer to another aliased instance.
        let mut paths: Vec<Option<ObjectPath>> = vec![None; pending.len()];
        loop {
            let mut progress = false;
            for i in 0..pending.len() {
                if paths[i].is_some() {
                    continue;
                }
                let table = AliasTable {
                    pending: &pending,
                    aliases: &aliases,
                    paths: &paths,
                };
                if let PathState::Ready(path) = self.instance_path(&pending[i], &table) {
                    paths[i] = Some(path);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        for p in &pending {
            let table = AliasTable {
                pending: &pending,
                aliases: &aliases,
                paths: &paths,
            };
            let converter = Converter {
                repo: self.repo,
                namespace: &p.namespace,
                aliases: Some(&table),
                depth: 0,
            };
            match converter.instance(&p.decl) {
                Ok(instance) => match self.repo.create_instance(&p.namespace, instance) {
                    Ok(_) => self.summary.instances += 1,
                    Err(e) => self.error(p.file, p.decl.class.span, e.to_string()),
                },
                Err((span, msg)) => self.error(p.file, span, msg),
            }
        }
    }

    /// The path of a pending instance, once the aliases its keys refer to have paths.
    fn instance_path(&self, p: &PendingInstance, table: &AliasTable) -> PathState {
        let Ok(class) = self.repo.class(&p.namespace, &p.decl.class.name) else {
            return PathState::Broken;
        };
        let converter = Converter {
            repo: self.repo,
            namespace: &p.namespace,
            aliases: Some(table),
            depth: 0,
        };
        let mut keys = Vec::new();
        for key in class.keys() {
            let given = p
                .decl
                .values
                .iter()
                .find(|v| key.name.matches(&v.name.name));
            let value = match given {
                Some(v) => {
                    match converter.convert(&v.value.0, key.ty, key.array.is_some(), Some(key)) {
                        Ok(v) => v,
                        Err(ValueError::Unresolved(_)) => return PathState::Waiting,
                        // Reported when the instance itself is converted.
                        Err(ValueError::Invalid(_)) => return PathState::Broken,
                    }
                }
                None => key.default.clone(),
            };
            if let Some(value) = value {
                keys.push(KeyBinding {
                    name: key.name.clone(),
                    value,
                });
            }
        }
        PathState::Ready(ObjectPath::new(
            Some(p.namespace.clone()),
            class.name.clone(),
            keys,
        ))
    }
}

/// Reads MOF text holding exactly one instance declaration (`instance of C { ... };`, as
/// clients send embedded instances) and types its values against the classes of
/// `namespace` in `repo`. Nothing is added to the repository, and keys may be missing.
/// Errors name the line and column.
pub fn parse_instance(repo: &Repository, namespace: &str, text: &str) -> Result<Instance, String> {
    let at = |span: Span, message: &str| {
        let before = &text[..(span.start as usize).min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("MOF instance, line {line}, column {column}: {message}")
    };
    let (productions, errors) = parse(text);
    if let Some(e) = errors.first() {
        return Err(at(e.span, &e.message));
    }
    let mut instances = productions.into_iter().filter_map(|p| match p {
        Production::Instance(decl) => Some(decl),
        _ => None,
    });
    let decl = instances
        .next()
        .ok_or_else(|| "the MOF text holds no instance declaration".to_owned())?;
    if instances.next().is_some() {
        return Err("the MOF text holds more than one instance declaration".to_owned());
    }
    if decl.alias.is_some() {
        return Err(at(decl.span, "an embedded instance cannot have an alias"));
    }
    let converter = Converter {
        repo,
        namespace,
        aliases: None,
        depth: 0,
    };
    converter
        .instance(&decl)
        .map_err(|(span, message)| at(span, &message))
}

/// Where the path of a pending instance stands while aliases are resolved.
enum PathState {
    /// Known.
    Ready(ObjectPath),
    /// A key refers to an instance whose path is not known yet.
    Waiting,
    /// Never: the class is missing or a key is invalid.
    Broken,
}

/// Why a literal cannot become a value of the type it initialises.
enum ValueError {
    /// A key refers to an aliased instance whose own path is not known yet (or never will
    /// be: a cycle of reference keys, or an error in that instance).
    Unresolved(String),
    /// The literal does not fit.
    Invalid(String),
}

impl From<String> for ValueError {
    fn from(message: String) -> Self {
        ValueError::Invalid(message)
    }
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Unresolved(alias) => write!(
                f,
                "the instance of alias ${alias} has no path (a cycle of reference keys, or an error in that instance)"
            ),
            ValueError::Invalid(message) => f.write_str(message),
        }
    }
}

struct AliasTable<'a> {
    pending: &'a [PendingInstance],
    aliases: &'a HashMap<String, usize>,
    paths: &'a [Option<ObjectPath>],
}

/// Gives literals their types.
#[derive(Clone, Copy)]
struct Converter<'a> {
    repo: &'a Repository,
    namespace: &'a str,
    aliases: Option<&'a AliasTable<'a>>,
    depth: usize,
}

impl Converter<'_> {
    fn instance(&self, decl: &InstanceDecl) -> Result<Instance, (Span, String)> {
        let class = self
            .repo
            .class(self.namespace, &decl.class.name)
            .map_err(|_| {
                (
                    decl.class.span,
                    format!(
                        "class '{}' does not exist in namespace {}",
                        decl.class.name, self.namespace
                    ),
                )
            })?;
        let mut instance = Instance::new(class.name.clone());
        for v in &decl.values {
            let Some(prop) = class.property(&v.name.name) else {
                return Err((
                    v.name.span,
                    format!("class '{}' has no property '{}'", class.name, v.name.name),
                ));
            };
            if instance.properties.contains(prop.name.as_str()) {
                return Err((
                    v.name.span,
                    format!("property '{}' is given twice", v.name.name),
                ));
            }
            let value = self
                .convert(&v.value.0, prop.ty, prop.array.is_some(), Some(prop))
                .map_err(|msg| (v.value.1, format!("{}.{}: {msg}", class.name, prop.name)))?;
            instance.properties.insert(
                prop.name.clone(),
                InstanceProperty {
                    name: prop.name.clone(),
                    ty: prop.ty,
                    is_array: prop.array.is_some(),
                    reference_class: prop.reference_class.clone(),
                    value,
                },
            );
        }
        Ok(instance)
    }

    fn convert(
        &self,
        lit: &Literal,
        ty: CimType,
        is_array: bool,
        prop: Option<&Property>,
    ) -> Result<Option<Value>, ValueError> {
        match lit {
            Literal::Null => Ok(None),
            Literal::Array(items) if is_array => {
                let mut out = Vec::with_capacity(items.len());
                for (item, _) in items {
                    out.push(self.convert(item, ty, false, prop)?);
                }
                Ok(Some(Value::Array(out)))
            }
            Literal::Array(_) => Err(format!("expected a single {ty}, found an array").into()),
            _ if is_array => {
                Err(format!("expected an array of {ty} in braces, found a single value").into())
            }
            _ => self.scalar(lit, ty, prop).map(Some),
        }
    }

    fn scalar(
        &self,
        lit: &Literal,
        ty: CimType,
        prop: Option<&Property>,
    ) -> Result<Value, ValueError> {
        let embeds = prop.is_some_and(|p| {
            p.qualifiers.get("EmbeddedInstance").is_some() || p.qualifiers.is_true("EmbeddedObject")
        });
        match (lit, ty) {
            (Literal::Boolean(b), CimType::Boolean) => Ok(Value::Boolean(*b)),
            (Literal::Integer(i), t) if t.is_integer() => Value::integer(t, *i).ok_or_else(|| {
                let (lo, hi) = t.integer_range().unwrap_or_default();
                ValueError::Invalid(format!("{i} is out of range for {t} ({lo} to {hi})"))
            }),
            (Literal::Integer(i), CimType::Real32) => Ok(Value::Real32(*i as f32)),
            (Literal::Integer(i), CimType::Real64) => Ok(Value::Real64(*i as f64)),
            (Literal::Real(r), CimType::Real32) => Ok(Value::Real32(*r as f32)),
            (Literal::Real(r), CimType::Real64) => Ok(Value::Real64(*r)),
            (Literal::String(s), CimType::String) => Ok(Value::String(s.clone())),
            (Literal::String(s), CimType::DateTime) => DateTime::parse(s)
                .map(Value::DateTime)
                .map_err(|e| ValueError::Invalid(e.to_string())),
            (Literal::String(s), CimType::Reference) => ObjectPath::parse(s)
                .map(Value::Reference)
                .map_err(|e| ValueError::Invalid(e.to_string())),
            (Literal::Char(c), CimType::Char16) => Ok(Value::Char16(*c)),
            (Literal::Alias(a), CimType::Reference) => self.alias_path(a).map(Value::Reference),
            (Literal::Alias(a), CimType::String) if embeds => self.alias_instance(a),
            (Literal::Instance(decl), CimType::String) if embeds => self.embedded(decl),
            (lit, t) => Err(format!("expected a {t} value, found {}", describe(lit)).into()),
        }
    }

    fn table(&self) -> Result<&AliasTable<'_>, ValueError> {
        self.aliases.ok_or_else(|| {
            ValueError::Invalid("aliases can only be used in instance values".into())
        })
    }

    fn alias_index(&self, alias: &str) -> Result<usize, ValueError> {
        self.table()?
            .aliases
            .get(&alias.to_ascii_lowercase())
            .copied()
            .ok_or_else(|| format!("alias ${alias} is not defined").into())
    }

    fn alias_path(&self, alias: &str) -> Result<ObjectPath, ValueError> {
        let i = self.alias_index(alias)?;
        self.table()?.paths[i]
            .clone()
            .ok_or_else(|| ValueError::Unresolved(alias.to_string()))
    }

    fn alias_instance(&self, alias: &str) -> Result<Value, ValueError> {
        let i = self.alias_index(alias)?;
        let p = &self.table()?.pending[i];
        self.embedded(&p.decl)
    }

    fn embedded(&self, decl: &InstanceDecl) -> Result<Value, ValueError> {
        if self.depth >= MAX_EMBED_DEPTH {
            return Err(ValueError::Invalid(
                "embedded instances nested too deeply (an alias that embeds itself?)".into(),
            ));
        }
        let inner = Converter {
            depth: self.depth + 1,
            ..*self
        };
        inner
            .instance(decl)
            .map(|i| Value::Instance(Box::new(i)))
            .map_err(|(_, m)| ValueError::Invalid(m))
    }
}

fn describe(lit: &Literal) -> &'static str {
    match lit {
        Literal::Integer(_) => "an integer",
        Literal::Real(_) => "a real",
        Literal::String(_) => "a string",
        Literal::Char(_) => "a char16",
        Literal::Boolean(_) => "a boolean",
        Literal::Null => "NULL",
        Literal::Array(_) => "an array",
        Literal::Alias(_) => "an alias (allowed for references and embedded instances)",
        Literal::Instance(_) => "an instance (allowed for EmbeddedInstance/EmbeddedObject strings)",
    }
}

fn type_name(ty: CimType, is_array: bool) -> String {
    if is_array {
        format!("{ty}[]")
    } else {
        ty.to_string()
    }
}

fn split_type(t: &TypeRef) -> (CimType, Option<Name>) {
    match t {
        TypeRef::Data(ty) => (*ty, None),
        TypeRef::Ref(class) => (CimType::Reference, Some(Name::new(&class.name))),
    }
}

fn array_of(spec: ArraySpec) -> Array {
    Array {
        size: spec.size.map_or(ArraySize::Unbounded, ArraySize::Fixed),
        kind: ArrayKind::Bag,
    }
}

/// Takes the array kind from the ArrayType qualifier.
fn with_kind(mut array: Array, qualifiers: &QualifierSet) -> Array {
    if let Some(kind) = qualifiers.str("ArrayType").and_then(ArrayKind::parse) {
        array.kind = kind;
    }
    array
}

/// Where in a class declaration a repository error belongs: the feature it names, or the
/// class name.
fn locate(c: &ClassDecl, e: &Error) -> Span {
    let element = match e {
        Error::QualifierNotDeclared { element, .. }
        | Error::QualifierScope { element, .. }
        | Error::QualifierType { element, .. }
        | Error::QualifierOverride { element, .. }
        | Error::OverrideNotFound { element, .. }
        | Error::OverrideType { element, .. }
        | Error::ReferenceClassNotFound { element, .. }
        | Error::ValueType { element, .. } => element.as_str(),
        Error::KeyBelowKeyedClass { property, .. } => property.as_str(),
        Error::SuperclassNotFound { .. } => {
            return c.superclass.as_ref().map_or(c.name.span, |s| s.span)
        }
        _ => return c.name.span,
    };
    let feature = element.split_once('.').map_or(element, |(_, f)| f);
    let feature = feature.split('(').next().unwrap_or(feature);
    c.features
        .iter()
        .find_map(|f| match f {
            Feature::Property(p) if p.name.name.eq_ignore_ascii_case(feature) => Some(p.name.span),
            Feature::Method(m) if m.name.name.eq_ignore_ascii_case(feature) => Some(m.name.span),
            _ => None,
        })
        .unwrap_or(c.name.span)
}
