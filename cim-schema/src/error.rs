//! The crate's error type: everything DSP0004 forbids, said precisely.

use crate::datetime::DateTimeError;
use crate::path::PathError;

/// A schema or repository error. Messages name the element (`Class.Property`,
/// `Class.Method(Parameter)`) and say what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The namespace does not exist.
    #[error("namespace '{0}' does not exist")]
    NamespaceNotFound(String),
    /// The class does not exist.
    #[error("class '{0}' does not exist")]
    ClassNotFound(String),
    /// A class names a superclass that does not exist.
    #[error("class '{class}' names superclass '{superclass}', which does not exist")]
    SuperclassNotFound {
        /// The class being defined.
        class: String,
        /// The missing superclass.
        superclass: String,
    },
    /// A class of that name already exists.
    #[error("class '{0}' already exists")]
    ClassAlreadyExists(String),
    /// A qualifier declaration of that name already exists with another definition.
    #[error("qualifier '{0}' is already declared differently")]
    QualifierAlreadyDeclared(String),
    /// A qualifier is used without a declaration.
    #[error("qualifier '{qualifier}' on {element} is not declared")]
    QualifierNotDeclared {
        /// The qualifier.
        qualifier: String,
        /// Where it was used.
        element: String,
    },
    /// A qualifier is used where its scope does not allow it.
    #[error("qualifier '{qualifier}' is not allowed on {element}: its scope is {scope}, this is a {kind}")]
    QualifierScope {
        /// The qualifier.
        qualifier: String,
        /// Where it was used.
        element: String,
        /// Its declared scope.
        scope: String,
        /// The kind of element.
        kind: &'static str,
    },
    /// A qualifier value does not have the declared type.
    #[error("qualifier '{qualifier}' on {element} must be {expected}, not {found}")]
    QualifierType {
        /// The qualifier.
        qualifier: String,
        /// Where it was used.
        element: String,
        /// The declared type.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A subclass changed a DisableOverride qualifier.
    #[error(
        "{element} cannot change qualifier '{qualifier}': it is DisableOverride in {superclass}"
    )]
    QualifierOverride {
        /// The qualifier.
        qualifier: String,
        /// The overriding element.
        element: String,
        /// The class whose value is fixed.
        superclass: String,
    },
    /// A class adds a key although its superclass already has keys.
    #[error(
        "{class}.{property} cannot be a key: superclass '{superclass}' already defines the keys"
    )]
    KeyBelowKeyedClass {
        /// The class being defined.
        class: String,
        /// The new key.
        property: String,
        /// The keyed superclass.
        superclass: String,
    },
    /// An Override qualifier names something the superclass does not have.
    #[error("{element} overrides '{named}', which its superclass does not have")]
    OverrideNotFound {
        /// The overriding element.
        element: String,
        /// The name in the Override qualifier.
        named: String,
    },
    /// An override changes the type of what it overrides.
    #[error("{element} overrides with a different type: {found} instead of {expected}")]
    OverrideType {
        /// The overriding element.
        element: String,
        /// The inherited type.
        expected: String,
        /// The overriding type.
        found: String,
    },
    /// A class is an association but its superclass is not, or the other way round.
    #[error(
        "class '{class}' and its superclass '{superclass}' must both be associations or both not"
    )]
    AssociationMismatch {
        /// The class.
        class: String,
        /// Its superclass.
        superclass: String,
    },
    /// A reference names a class that does not exist.
    #[error("{element} refers to class '{class}', which does not exist")]
    ReferenceClassNotFound {
        /// The reference.
        element: String,
        /// The missing class.
        class: String,
    },
    /// An instance of an abstract class.
    #[error("class '{0}' is abstract: it cannot have instances")]
    AbstractInstance(String),
    /// An instance names a property its class does not have.
    #[error("class '{class}' has no property '{property}'")]
    NoSuchProperty {
        /// The class.
        class: String,
        /// The unknown property.
        property: String,
    },
    /// A value does not fit the declared type.
    #[error("{element} must be {expected}, not {found}")]
    ValueType {
        /// The property or parameter.
        element: String,
        /// The declared type.
        expected: String,
        /// What was given.
        found: String,
    },
    /// An instance lacks a value for a key.
    #[error("instance of '{class}' has no value for key '{property}'")]
    MissingKey {
        /// The class.
        class: String,
        /// The key property.
        property: String,
    },
    /// An instance with the same path exists.
    #[error("instance {0} already exists")]
    InstanceAlreadyExists(String),
    /// A bad object path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A bad datetime.
    #[error(transparent)]
    DateTime(#[from] DateTimeError),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
