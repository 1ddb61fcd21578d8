//! Protocol-neutral operations: what CIM-XML (and later WS-Man) requests decode into, and
//! what the dispatcher executes.

use cim_schema::{Class, Instance, Name, ObjectPath, QualifierDecl, Value};

/// A value whose CIM type is not known until the dispatcher looks at the class or method
/// declaration: untyped CIM-XML VALUE text, or an already typed value.
#[derive(Clone, Debug, PartialEq)]
pub enum UntypedValue {
    /// Text of a VALUE.
    Text(String),
    /// Texts of a VALUE.ARRAY (None for VALUE.NULL).
    TextArray(Vec<Option<String>>),
    /// A value whose type the sender stated (PARAMTYPE), or a reference.
    Typed(Value),
}

/// The association filters (DSP0200 5.3.2.12).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AssociationFilter {
    /// AssocClass (Associators) or ResultClass (References): the association class.
    pub assoc_class: Option<Name>,
    /// ResultClass of Associators: the class of the objects returned.
    pub result_class: Option<Name>,
    /// Role: the reference property pointing at the source object.
    pub role: Option<Name>,
    /// ResultRole: the reference property pointing at the returned object.
    pub result_role: Option<Name>,
}

/// How instances are shaped in a result.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceOptions {
    /// LocalOnly (deprecated): only properties defined or overridden in each instance's class.
    pub local_only: bool,
    /// DeepInheritance: properties added by subclasses of the requested class too.
    pub deep_inheritance: bool,
    /// IncludeClassOrigin.
    pub include_class_origin: bool,
    /// PropertyList: only these properties (`None` means all).
    pub property_list: Option<Vec<Name>>,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        InstanceOptions {
            local_only: false,
            deep_inheritance: true,
            include_class_origin: false,
            property_list: None,
        }
    }
}

/// A filter query given to a pull operation.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterQuery {
    /// FilterQueryLanguage.
    pub language: String,
    /// FilterQuery.
    pub query: String,
}

/// The common parameters of the Open... operations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenOptions {
    /// FilterQueryLanguage and FilterQuery, if given.
    pub filter: Option<FilterQuery>,
    /// OperationTimeout in seconds (`None`: the server default).
    pub operation_timeout: Option<u32>,
    /// ContinueOnError.
    pub continue_on_error: bool,
    /// MaxObjectCount for the open call itself.
    pub max_object_count: u32,
}

/// Every CIM operation the server executes.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // the variants and fields are DSP0200's operations and parameters
pub enum Operation {
    GetClass {
        class: Name,
        local_only: bool,
        include_qualifiers: bool,
        include_class_origin: bool,
        property_list: Option<Vec<Name>>,
    },
    EnumerateClasses {
        class: Option<Name>,
        deep_inheritance: bool,
        local_only: bool,
        include_qualifiers: bool,
        include_class_origin: bool,
    },
    EnumerateClassNames {
        class: Option<Name>,
        deep_inheritance: bool,
    },
    CreateClass {
        class: Class,
    },
    ModifyClass {
        class: Class,
    },
    DeleteClass {
        class: Name,
    },
    GetQualifier {
        name: Name,
    },
    SetQualifier {
        declaration: QualifierDecl,
    },
    DeleteQualifier {
        name: Name,
    },
    EnumerateQualifiers,
    GetInstance {
        path: ObjectPath,
        options: InstanceOptions,
    },
    EnumerateInstances {
        class: Name,
        options: InstanceOptions,
    },
    EnumerateInstanceNames {
        class: Name,
    },
    CreateInstance {
        instance: Instance,
    },
    ModifyInstance {
        path: ObjectPath,
        instance: Instance,
        property_list: Option<Vec<Name>>,
    },
    DeleteInstance {
        path: ObjectPath,
    },
    GetProperty {
        path: ObjectPath,
        property: Name,
    },
    SetProperty {
        path: ObjectPath,
        property: Name,
        value: Option<UntypedValue>,
    },
    Associators {
        object: ObjectPath,
        filter: AssociationFilter,
        options: InstanceOptions,
        include_qualifiers: bool,
    },
    AssociatorNames {
        object: ObjectPath,
        filter: AssociationFilter,
    },
    References {
        object: ObjectPath,
        filter: AssociationFilter,
        options: InstanceOptions,
        include_qualifiers: bool,
    },
    ReferenceNames {
        object: ObjectPath,
        filter: AssociationFilter,
    },
    ExecQuery {
        language: String,
        query: String,
    },
    OpenEnumerateInstances {
        class: Name,
        options: InstanceOptions,
        open: OpenOptions,
    },
    OpenEnumerateInstancePaths {
        class: Name,
        open: OpenOptions,
    },
    OpenReferenceInstances {
        object: ObjectPath,
        filter: AssociationFilter,
        options: InstanceOptions,
        open: OpenOptions,
    },
    OpenReferenceInstancePaths {
        object: ObjectPath,
        filter: AssociationFilter,
        open: OpenOptions,
    },
    OpenAssociatorInstances {
        object: ObjectPath,
        filter: AssociationFilter,
        options: InstanceOptions,
        open: OpenOptions,
    },
    OpenAssociatorInstancePaths {
        object: ObjectPath,
        filter: AssociationFilter,
        open: OpenOptions,
    },
    OpenQueryInstances {
        language: String,
        query: String,
        return_query_result_class: bool,
        open: OpenOptions,
    },
    PullInstancesWithPath {
        context: String,
        max_object_count: u32,
    },
    PullInstancePaths {
        context: String,
        max_object_count: u32,
    },
    PullInstances {
        context: String,
        max_object_count: u32,
    },
    EnumerationCount {
        context: String,
    },
    CloseEnumeration {
        context: String,
    },
    /// An extrinsic method call on a class (static methods) or an instance.
    InvokeMethod {
        target: ObjectPath,
        method: Name,
        parameters: Vec<(Name, Option<UntypedValue>)>,
    },
}

impl Operation {
    /// Whether the operation changes state, so a read-only user may not perform it.
    /// Extrinsic methods count as writes: they start, stop and reconfigure things.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Operation::CreateClass { .. }
                | Operation::ModifyClass { .. }
                | Operation::DeleteClass { .. }
                | Operation::SetQualifier { .. }
                | Operation::DeleteQualifier { .. }
                | Operation::CreateInstance { .. }
                | Operation::ModifyInstance { .. }
                | Operation::DeleteInstance { .. }
                | Operation::SetProperty { .. }
                | Operation::InvokeMethod { .. }
        )
    }
}
