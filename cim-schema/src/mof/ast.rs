//! The syntax tree of a MOF file: what the parser produces and the compiler consumes.

use crate::qualifier::{FlavorKeyword, Scope};
use crate::types::CimType;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// Past the last byte.
    pub end: u32,
}

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The spelling.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A constant as written, before it is given a type by what it initialises.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// An integer in any base, already range-checked to fit 64 bits signed or unsigned.
    Integer(i128),
    /// A real.
    Real(f64),
    /// A string, escapes decoded and concatenations joined.
    String(std::sync::Arc<str>),
    /// A char16.
    Char(char),
    /// TRUE or FALSE.
    Boolean(bool),
    /// NULL.
    Null,
    /// `{ a, b }`
    Array(Vec<(Literal, Span)>),
    /// `$Alias`: a reference to, or the embedding of, an aliased instance.
    Alias(String),
    /// `instance of C { ... }` given as a value: an embedded instance.
    Instance(Box<InstanceDecl>),
}

/// One qualifier where it is used: `Key`, `Description("...")`, `ValueMap {..} : Restricted`.
#[derive(Clone, Debug, PartialEq)]
pub struct QualifierUse {
    /// Its name.
    pub name: Ident,
    /// Its value, if one was given.
    pub value: Option<(Literal, Span)>,
    /// Flavors given after a colon.
    pub flavors: Vec<FlavorKeyword>,
}

/// A type as written: a data type, or `Class REF`.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeRef {
    /// An intrinsic type.
    Data(CimType),
    /// A reference to instances of a class.
    Ref(Ident),
}

/// `[n]` or `[]` after a name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArraySpec {
    /// The size, if given.
    pub size: Option<u32>,
}

/// A property or reference declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyDecl {
    /// Its qualifiers.
    pub qualifiers: Vec<QualifierUse>,
    /// Its type.
    pub ty: TypeRef,
    /// Its name.
    pub name: Ident,
    /// Present for arrays.
    pub array: Option<ArraySpec>,
    /// The default value.
    pub default: Option<(Literal, Span)>,
}

/// A method parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterDecl {
    /// Its qualifiers.
    pub qualifiers: Vec<QualifierUse>,
    /// Its type.
    pub ty: TypeRef,
    /// Its name.
    pub name: Ident,
    /// Present for arrays.
    pub array: Option<ArraySpec>,
}

/// A method declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodDecl {
    /// Its qualifiers.
    pub qualifiers: Vec<QualifierUse>,
    /// The return type.
    pub return_type: TypeRef,
    /// Its name.
    pub name: Ident,
    /// Its parameters.
    pub parameters: Vec<ParameterDecl>,
}

/// A class feature.
#[derive(Clone, Debug, PartialEq)]
pub enum Feature {
    /// A property or reference.
    Property(PropertyDecl),
    /// A method.
    Method(MethodDecl),
}

/// `[quals] class Name : Super { features };`
#[derive(Clone, Debug, PartialEq)]
pub struct ClassDecl {
    /// Class qualifiers.
    pub qualifiers: Vec<QualifierUse>,
    /// The class name.
    pub name: Ident,
    /// The superclass.
    pub superclass: Option<Ident>,
    /// Properties, references and methods.
    pub features: Vec<Feature>,
}

/// One `Name = value;` of an instance.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyValue {
    /// The property.
    pub name: Ident,
    /// The value.
    pub value: (Literal, Span),
}

/// `instance of Class as $Alias { ... };`
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceDecl {
    /// The class.
    pub class: Ident,
    /// The alias, without `$`.
    pub alias: Option<Ident>,
    /// Property values.
    pub values: Vec<PropertyValue>,
    /// The whole declaration.
    pub span: Span,
}

/// `Qualifier Name : type [= default], Scope(...), Flavor(...);`
#[derive(Clone, Debug, PartialEq)]
pub struct QualifierDeclAst {
    /// The name.
    pub name: Ident,
    /// The value type.
    pub ty: CimType,
    /// Present for array qualifiers.
    pub array: Option<ArraySpec>,
    /// The default.
    pub default: Option<(Literal, Span)>,
    /// The scope.
    pub scope: Scope,
    /// Declared flavors.
    pub flavors: Vec<FlavorKeyword>,
}

/// `#pragma name("value")`
#[derive(Clone, Debug, PartialEq)]
pub struct Pragma {
    /// The pragma's name.
    pub name: Ident,
    /// Its argument.
    pub value: String,
}

/// One top-level statement of a MOF file.
#[derive(Clone, Debug, PartialEq)]
pub enum Production {
    /// A compiler directive.
    Pragma(Pragma),
    /// A qualifier declaration.
    Qualifier(QualifierDeclAst),
    /// A class declaration.
    Class(ClassDecl),
    /// An instance declaration.
    Instance(InstanceDecl),
}
