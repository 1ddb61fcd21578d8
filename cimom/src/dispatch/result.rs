//! What operations return: single objects, or streams of items that the protocol layer
//! encodes as they arrive.

use std::sync::Arc;

use cim_schema::{Class, Instance, Name, ObjectPath, QualifierDecl, Repository, Value};
use tokio::sync::mpsc;

use crate::cimxml::encode::{ClassFilter, InstanceFilter};
use crate::error::CimResult;

/// An instance and its (namespace-local unless cross-namespace) path.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceWithPath {
    /// The path.
    pub path: ObjectPath,
    /// The instance.
    pub instance: Instance,
}

/// A class with what is needed to encode it.
#[derive(Clone)]
pub struct ClassItem {
    /// The class.
    pub class: Arc<Class>,
    /// The schema it belongs to (qualifier declarations give types of NULL qualifiers).
    pub schema: Arc<Repository>,
    /// Its namespace.
    pub namespace: String,
    /// How it is shaped.
    pub filter: Arc<ClassFilter>,
}

/// One element of a result.
#[derive(Clone)]
pub enum Item {
    /// An instance, shaped by `filter`; `class` is set when CLASSORIGIN is wanted.
    Instance {
        /// The instance and its path.
        object: Arc<InstanceWithPath>,
        /// Which properties are written.
        filter: Arc<InstanceFilter>,
        /// The instance's class, for IncludeClassOrigin.
        class: Option<Arc<Class>>,
    },
    /// An instance path.
    Path(ObjectPath),
    /// A class (associators of a class).
    Class(ClassItem),
    /// A class path (associator names of a class).
    ClassPath(ObjectPath),
}

/// A stream of result items, produced by a task and consumed by the encoder.
pub type ItemStream = mpsc::Receiver<CimResult<Item>>;

/// How each item of a stream is wrapped (DSP0201 return elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultForm {
    /// VALUE.NAMEDINSTANCE (EnumerateInstances).
    NamedInstance,
    /// INSTANCENAME (EnumerateInstanceNames).
    InstanceName,
    /// VALUE.OBJECTWITHPATH (Associators, References, ExecQuery).
    ObjectWithPath,
    /// OBJECTPATH (AssociatorNames, ReferenceNames).
    ObjectPath,
    /// VALUE.INSTANCEWITHPATH (Open/Pull...Instances).
    InstanceWithPath,
    /// INSTANCEPATH (Open/Pull...Paths).
    InstancePath,
    /// INSTANCE (OpenQueryInstances, PullInstances).
    Instance,
}

/// The answer of a pull or open operation.
pub struct PullResult {
    /// The items of this batch.
    pub items: Vec<Item>,
    /// How to wrap them.
    pub form: ResultForm,
    /// The context to continue with; `None` at the end.
    pub context: Option<String>,
    /// OpenQueryInstances with ReturnQueryResultClass: the result class.
    pub query_result_class: Option<ClassItem>,
}

/// What an operation returns.
pub enum Outcome {
    /// Nothing (Create/Modify/Delete..., SetQualifier, CloseEnumeration).
    Empty,
    /// One class (GetClass).
    Class(ClassItem),
    /// Classes (EnumerateClasses).
    Classes(Vec<ClassItem>),
    /// Class names (EnumerateClassNames).
    ClassNames(Vec<Name>),
    /// One qualifier declaration (GetQualifier).
    Qualifier(QualifierDecl),
    /// All qualifier declarations (EnumerateQualifiers).
    Qualifiers(Vec<QualifierDecl>),
    /// One instance (GetInstance).
    Instance(Item),
    /// A new instance's path (CreateInstance).
    InstanceName(ObjectPath),
    /// A property value (GetProperty).
    Value(Option<Value>),
    /// A stream of items.
    Stream(ItemStream, ResultForm),
    /// A batch of a pull enumeration.
    Pull(PullResult),
    /// An estimated count (EnumerationCount); `None` when unknown.
    Count(Option<u64>),
    /// The result of an extrinsic method.
    Method {
        /// The return value and its declared type.
        return_value: Value,
        /// Output parameters.
        out: Vec<(Name, Value)>,
    },
}
