//! Qualifiers (DSP0004 5.6): declarations with type, scope and flavor, and the qualifiers
//! applied to schema elements.

use std::fmt;

use crate::name::Name;
use crate::types::{Array, CimType};
use crate::value::Value;

/// Where a qualifier may be used. A set of element kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Scope(u8);

impl Scope {
    /// Ordinary classes.
    pub const CLASS: Scope = Scope(1);
    /// Association classes.
    pub const ASSOCIATION: Scope = Scope(1 << 1);
    /// Indication classes.
    pub const INDICATION: Scope = Scope(1 << 2);
    /// Non-reference properties.
    pub const PROPERTY: Scope = Scope(1 << 3);
    /// Reference properties.
    pub const REFERENCE: Scope = Scope(1 << 4);
    /// Methods.
    pub const METHOD: Scope = Scope(1 << 5);
    /// Method parameters.
    pub const PARAMETER: Scope = Scope(1 << 6);
    /// Every kind of element (`Scope(any)`).
    pub const ANY: Scope = Scope(0x7f);
    /// No element at all.
    pub const NONE: Scope = Scope(0);

    /// The named scopes, in MOF order.
    pub const NAMED: [(&'static str, Scope); 7] = [
        ("class", Scope::CLASS),
        ("association", Scope::ASSOCIATION),
        ("indication", Scope::INDICATION),
        ("property", Scope::PROPERTY),
        ("reference", Scope::REFERENCE),
        ("method", Scope::METHOD),
        ("parameter", Scope::PARAMETER),
    ];

    /// Whether every kind in `other` is in `self`.
    pub fn contains(self, other: Scope) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a kind.
    pub fn intersects(self, other: Scope) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of two scopes.
    pub fn union(self, other: Scope) -> Scope {
        Scope(self.0 | other.0)
    }

    /// Parses one MOF scope keyword (`any` included), ignoring case.
    pub fn parse(keyword: &str) -> Option<Scope> {
        if keyword.eq_ignore_ascii_case("any") {
            return Some(Scope::ANY);
        }
        Scope::NAMED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(keyword))
            .map(|(_, s)| *s)
    }
}

impl fmt::Display for Scope {
    /// The MOF spelling: `any`, or the keywords separated by ", ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Scope::ANY {
            return f.write_str("any");
        }
        let names: Vec<&str> = Scope::NAMED
            .iter()
            .filter(|(_, s)| self.contains(*s))
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join(", "))
    }
}

/// How a qualifier behaves in subclasses and translations (DSP0004 5.6.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flavor {
    /// EnableOverride (true) or DisableOverride (false): may a subclass change the value?
    pub overridable: bool,
    /// ToSubclass (true) or Restricted (false): is it inherited by subclasses?
    pub to_subclass: bool,
    /// Translatable: may the value be localized?
    pub translatable: bool,
}

impl Default for Flavor {
    /// DSP0004's defaults: EnableOverride, ToSubclass, not Translatable.
    fn default() -> Self {
        Flavor {
            overridable: true,
            to_subclass: true,
            translatable: false,
        }
    }
}

/// One flavor keyword as written in MOF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlavorKeyword {
    /// EnableOverride
    EnableOverride,
    /// DisableOverride
    DisableOverride,
    /// ToSubclass
    ToSubclass,
    /// Restricted
    Restricted,
    /// Translatable
    Translatable,
    /// ToInstance (deprecated in DSP0004 2.x; accepted and has no effect)
    ToInstance,
}

impl FlavorKeyword {
    /// Every keyword with its MOF spelling.
    pub const ALL: [(&'static str, FlavorKeyword); 6] = [
        ("EnableOverride", FlavorKeyword::EnableOverride),
        ("DisableOverride", FlavorKeyword::DisableOverride),
        ("ToSubclass", FlavorKeyword::ToSubclass),
        ("Restricted", FlavorKeyword::Restricted),
        ("Translatable", FlavorKeyword::Translatable),
        ("ToInstance", FlavorKeyword::ToInstance),
    ];

    /// Parses a flavor keyword, ignoring case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, k)| *k)
    }

    /// Applies the keyword to a flavor.
    pub fn apply(self, flavor: &mut Flavor) {
        match self {
            FlavorKeyword::EnableOverride => flavor.overridable = true,
            FlavorKeyword::DisableOverride => flavor.overridable = false,
            FlavorKeyword::ToSubclass => flavor.to_subclass = true,
            FlavorKeyword::Restricted => flavor.to_subclass = false,
            FlavorKeyword::Translatable => flavor.translatable = true,
            FlavorKeyword::ToInstance => {}
        }
    }
}

impl Flavor {
    /// The MOF keywords that give this flavor, relative to DSP0004's defaults.
    pub fn keywords(&self) -> Vec<&'static str> {
        self.keywords_relative_to(&Flavor::default())
    }

    /// The MOF keywords that turn `base` into this flavor.
    pub fn keywords_relative_to(&self, base: &Flavor) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.overridable != base.overridable {
            out.push(if self.overridable {
                "EnableOverride"
            } else {
                "DisableOverride"
            });
        }
        if self.to_subclass != base.to_subclass {
            out.push(if self.to_subclass {
                "ToSubclass"
            } else {
                "Restricted"
            });
        }
        if self.translatable && !base.translatable {
            out.push("Translatable");
        }
        out
    }
}

/// A qualifier declaration (`Qualifier Key : boolean = false, Scope(...), Flavor(...);`).
#[derive(Clone, Debug, PartialEq)]
pub struct QualifierDecl {
    /// The qualifier's name.
    pub name: Name,
    /// The value type; references are not allowed.
    pub ty: CimType,
    /// Present if the qualifier takes an array.
    pub array: Option<Array>,
    /// The value when the qualifier is absent or given without a value.
    pub default: Option<Value>,
    /// Where the qualifier may be used.
    pub scope: Scope,
    /// Its default flavor.
    pub flavor: Flavor,
}

/// A qualifier applied to a class, property, method or parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Qualifier {
    /// The qualifier's name.
    pub name: Name,
    /// Its value (NULL is `None`).
    pub value: Option<Value>,
    /// The effective flavor: the declaration's, changed by any flavor given where it is used.
    pub flavor: Flavor,
    /// True when inherited from the superclass rather than specified on this element.
    pub propagated: bool,
}

impl Qualifier {
    /// A local qualifier with the default flavor.
    pub fn new(name: impl Into<Name>, value: impl Into<Value>) -> Self {
        Qualifier {
            name: name.into(),
            value: Some(value.into()),
            flavor: Flavor::default(),
            propagated: false,
        }
    }
}

/// The qualifiers of one element, in the order they were given. Elements carry a handful
/// of qualifiers, so this is a small vector searched by name.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QualifierSet(Vec<Qualifier>);

impl QualifierSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
    /// The qualifier named `name`, ignoring case.
    pub fn get(&self, name: &str) -> Option<&Qualifier> {
        self.0.iter().find(|q| q.name.matches(name))
    }
    /// The value of the qualifier named `name`, if present and not NULL.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.get(name).and_then(|q| q.value.as_ref())
    }
    /// Whether a boolean qualifier is present and true (`[Key]`, `[Abstract]`).
    pub fn is_true(&self, name: &str) -> bool {
        matches!(self.value(name), Some(Value::Boolean(true)))
    }
    /// The value of a string qualifier.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(Value::as_str)
    }
    /// Adds a qualifier, or replaces the one of the same name in its position.
    pub fn insert(&mut self, q: Qualifier) {
        match self.0.iter_mut().find(|e| e.name == q.name) {
            Some(existing) => *existing = q,
            None => self.0.push(q),
        }
    }
    /// Removes the qualifier named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Qualifier> {
        let i = self.0.iter().position(|q| q.name.matches(name))?;
        Some(self.0.remove(i))
    }
    /// Iterates in order.
    pub fn iter(&self) -> impl Iterator<Item = &Qualifier> {
        self.0.iter()
    }
    /// The qualifiers given on this element, not inherited.
    pub fn local(&self) -> impl Iterator<Item = &Qualifier> {
        self.0.iter().filter(|q| !q.propagated)
    }
    /// Number of qualifiers.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for QualifierSet {
    type Item = Qualifier;
    type IntoIter = std::vec::IntoIter<Qualifier>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scope::parse("Property")
            .unwrap()
            .union(Scope::parse("reference").unwrap());
        assert_eq!(s.to_string(), "property, reference");
        assert_eq!(Scope::parse("ANY").unwrap().to_string(), "any");
        assert!(Scope::ANY.contains(Scope::PARAMETER));
        assert!(Scope::parse("struct").is_none());
    }

    #[test]
    fn flavors_apply_and_print() {
        let mut f = Flavor::default();
        FlavorKeyword::parse("disableoverride")
            .unwrap()
            .apply(&mut f);
        FlavorKeyword::parse("Restricted").unwrap().apply(&mut f);
        assert_eq!(f.keywords(), vec!["DisableOverride", "Restricted"]);
    }
}
