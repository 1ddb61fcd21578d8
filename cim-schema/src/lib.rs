//! The CIM metamodel of DMTF DSP0004 as plain Rust data, the repository that resolves
//! inheritance and validates classes and instances, and the MOF compiler (DSP0221).
//!
//! Nothing here does I/O except the MOF compiler reading the files it is asked to compile.
//!
//! - [`Name`], [`NameMap`]: case-insensitive names that keep their spelling.
//! - [`CimType`], [`Value`], [`DateTime`]: types and values.
//! - [`QualifierDecl`], [`Qualifier`]: qualifiers with scopes and flavors.
//! - [`Class`], [`Property`], [`Method`], [`Parameter`], [`Instance`].
//! - [`ObjectPath`]: instance and class paths, printed and parsed as DSP0207 WBEM URIs.
//! - [`Repository`]: namespaces, resolved classes, indexes, static instances.
//! - [`mof`]: compile MOF into a repository and print it back.

mod class;
mod datetime;
mod error;
mod instance;
pub mod mof;
mod name;
mod path;
mod qualifier;
mod repository;
mod types;
mod value;

pub use class::{Class, Method, Parameter, Property};
pub use datetime::{DateTime, DateTimeError, Interval, Timestamp};
pub use error::{Error, Result};
pub use instance::{Instance, InstanceProperty};
pub use name::{cmp_ignore_case, duplicate_name, eq_ignore_case, is_identifier, Name, NameMap};
pub use path::{key_values_equal, KeyBinding, ObjectPath, PathError};
pub use qualifier::{Flavor, FlavorKeyword, Qualifier, QualifierDecl, QualifierSet, Scope};
pub use repository::{check_value, AssociationRole, Namespace, Repository};
pub use types::{Array, ArrayKind, ArraySize, CimType, UnknownType};
pub use value::Value;
