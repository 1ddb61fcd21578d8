//! Query languages: WQL (`SELECT ... FROM ... WHERE ...`) for ExecQuery and
//! OpenQueryInstances, and DMTF:FQL (a bare WHERE-clause expression) as the filter
//! language of the pull operations. Both parse into one expression tree and evaluate
//! against instances.

use std::cmp::Ordering;

use cim_schema::{Instance, Name, ObjectPath, Value};

use crate::error::{CimError, StatusCode};

mod lex;
mod like;
mod parse;

pub use like::like;

/// A supported query language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// WQL, as WMI and OpenPegasus define it.
    Wql,
    /// DMTF:FQL (DSP0212): the filter expression of pull operations.
    Fql,
}

impl Language {
    /// Recognises a QueryLanguage / FilterQueryLanguage parameter, ignoring case.
    pub fn parse(name: &str) -> Result<Self, CimError> {
        if name.eq_ignore_ascii_case("WQL") {
            Ok(Language::Wql)
        } else if name.eq_ignore_ascii_case("DMTF:FQL") {
            Ok(Language::Fql)
        } else {
            Err(CimError::new(
                StatusCode::QueryLanguageNotSupported,
                format!("query language '{name}' is not supported; use WQL or DMTF:FQL"),
            ))
        }
    }
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The selected properties; `None` for `*` (and always for FQL).
    pub select: Option<Vec<Name>>,
    /// The FROM class (WQL only).
    pub from: Option<Name>,
    /// The WHERE condition, if any.
    pub condition: Option<Expr>,
}

/// A condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// Does not hold.
    Not(Box<Expr>),
    /// `a op b`.
    Compare(Operand, CompareOp, Operand),
    /// `p IS NULL` (`negated`: IS NOT NULL).
    IsNull {
        /// The property.
        property: Name,
        /// IS NOT NULL.
        negated: bool,
    },
    /// `p LIKE 'pattern'` (WQL wildcards `%`, `_`, `[set]`).
    Like {
        /// The property.
        property: Name,
        /// The pattern.
        pattern: String,
        /// NOT LIKE.
        negated: bool,
    },
    /// `p ISA Class`: an embedded instance or reference of that class or a subclass.
    Isa {
        /// The property.
        property: Name,
        /// The class.
        class: Name,
    },
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A property of the instance.
    Property(Name),
    /// A string literal.
    String(String),
    /// An integer literal.
    Integer(i128),
    /// A real literal.
    Real(f64),
    /// TRUE or FALSE.
    Boolean(bool),
    /// NULL.
    Null,
}

impl Query {
    /// Parses `text` in `language`.
    pub fn parse(language: Language, text: &str) -> Result<Query, CimError> {
        parse::parse(language, text)
    }

    /// Every property the query names, to check against the class.
    pub fn properties(&self) -> Vec<&Name> {
        let mut out: Vec<&Name> = self.select.iter().flatten().collect();
        if let Some(c) = &self.condition {
            c.properties(&mut out);
        }
        out
    }

    /// Whether `inst` satisfies the WHERE condition. `is_a(class, ancestor)` answers ISA.
    pub fn matches(&self, inst: &Instance, is_a: &dyn Fn(&str, &str) -> bool) -> bool {
        self.condition
            .as_ref()
            .is_none_or(|c| c.eval(inst, is_a) == Some(true))
    }
}

impl Expr {
    fn properties<'a>(&'a self, out: &mut Vec<&'a Name>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.properties(out);
                b.properties(out);
            }
            Expr::Not(a) => a.properties(out),
            Expr::Compare(a, _, b) => {
                for o in [a, b] {
                    if let Operand::Property(n) = o {
                        out.push(n);
                    }
                }
            }
            Expr::IsNull { property, .. }
            | Expr::Like { property, .. }
            | Expr::Isa { property, .. } => out.push(property),
        }
    }

    /// Three-valued evaluation: `None` is SQL's unknown (a comparison with NULL).
    fn eval(&self, inst: &Instance, is_a: &dyn Fn(&str, &str) -> bool) -> Option<bool> {
        match self {
            Expr::And(a, b) => match (a.eval(inst, is_a), b.eval(inst, is_a)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (a.eval(inst, is_a), b.eval(inst, is_a)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Not(a) => a.eval(inst, is_a).map(|v| !v),
            Expr::IsNull { property, negated } => {
                Some(inst.get(property.as_str()).is_none() != *negated)
            }
            Expr::Like {
                property,
                pattern,
                negated,
            } => {
                let v = inst.get(property.as_str())?;
                let s = match v {
                    Value::String(s) => s.to_string(),
                    Value::Char16(c) => c.to_string(),
                    _ => return Some(false),
                };
                Some(like(&s, pattern) != *negated)
            }
            Expr::Isa { property, class } => match inst.get(property.as_str())? {
                Value::Instance(e) => Some(is_a(e.class_name.as_str(), class.as_str())),
                Value::Reference(p) => Some(is_a(p.class_name.as_str(), class.as_str())),
                _ => Some(false),
            },
            Expr::Compare(a, op, b) => {
                let a = resolve(a, inst)?;
                let b = resolve(b, inst)?;
                let ord = compare(&a, &b)?;
                Some(match op {
                    CompareOp::Eq => ord == Ordering::Equal,
                    CompareOp::Ne => ord != Ordering::Equal,
                    CompareOp::Lt => ord == Ordering::Less,
                    CompareOp::Le => ord != Ordering::Greater,
                    CompareOp::Gt => ord == Ordering::Greater,
                    CompareOp::Ge => ord != Ordering::Less,
                })
            }
        }
    }
}

/// A value taking part in a comparison.
enum Scalar {
    Str(String),
    Int(i128),
    Real(f64),
    Bool(bool),
    Path(ObjectPath),
}

fn resolve(o: &Operand, inst: &Instance) -> Option<Scalar> {
    Some(match o {
        Operand::Property(n) => match inst.get(n.as_str())? {
            Value::String(s) => Scalar::Str(s.to_string()),
            Value::Char16(c) => Scalar::Str(c.to_string()),
            Value::Boolean(b) => Scalar::Bool(*b),
            Value::Real32(r) => Scalar::Real(f64::from(*r)),
            Value::Real64(r) => Scalar::Real(*r),
            Value::DateTime(d) => Scalar::Str(d.to_string()),
            Value::Reference(p) => Scalar::Path(p.clone()),
            v => Scalar::Int(v.as_i128()?),
        },
        Operand::String(s) => Scalar::Str(s.clone()),
        Operand::Integer(i) => Scalar::Int(*i),
        Operand::Real(r) => Scalar::Real(*r),
        Operand::Boolean(b) => Scalar::Bool(*b),
        Operand::Null => return None,
    })
}

fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    use Scalar::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Int(x), Real(y)) => (*x as f64).partial_cmp(y),
        (Real(x), Int(y)) => x.partial_cmp(&(*y as f64)),
        (Real(x), Real(y)) => x.partial_cmp(y),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        // Strings compare by code point; so do datetimes, whose fixed-width form orders
        // correctly for one UTC offset.
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Path(p), Str(s)) | (Str(s), Path(p)) => {
            let other = ObjectPath::parse(s).ok()?;
            Some(if p.local() == other.local() {
                Ordering::Equal
            } else {
                Ordering::Less
            })
        }
        (Path(x), Path(y)) => Some(if x == y {
            Ordering::Equal
        } else {
            Ordering::Less
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> Instance {
        let mut i = Instance::new("KVM_ComputerSystem");
        i.set("Name", "vm-web1");
        i.set("EnabledState", Value::UInt16(2));
        i.set("Dedicated", Value::Array(vec![Some(Value::UInt16(1))]));
        i.set("Caption", Value::String("x".into()));
        i.properties.get_mut("Caption").unwrap().value = None;
        i
    }

    fn eval(q: &str) -> bool {
        Query::parse(Language::Wql, q)
            .unwrap()
            .matches(&inst(), &|a, b| a.eq_ignore_ascii_case(b))
    }

    #[test]
    fn wql_selects_and_filters() {
        let q = Query::parse(
            Language::Wql,
            "select Name, EnabledState from KVM_ComputerSystem",
        )
        .unwrap();
        assert_eq!(q.select.unwrap().len(), 2);
        assert!(eval("SELECT * FROM C WHERE EnabledState = 2"));
        assert!(eval(
            "SELECT * FROM C WHERE EnabledState >= 2 AND Name <> 'x'"
        ));
        assert!(!eval(
            "SELECT * FROM C WHERE NOT (EnabledState = 2 OR Name = 'y')"
        ));
        assert!(eval("SELECT * FROM C WHERE Name LIKE 'vm-%1'"));
        assert!(eval("SELECT * FROM C WHERE Name LIKE '[a-v]m_web[0-9]'"));
        assert!(!eval("SELECT * FROM C WHERE Name NOT LIKE 'vm%'"));
        assert!(eval(
            "SELECT * FROM C WHERE Caption IS NULL AND Name IS NOT NULL"
        ));
        // Comparisons with NULL are unknown, so neither they nor their negation hold.
        assert!(!eval("SELECT * FROM C WHERE Caption = 'x'"));
        assert!(!eval("SELECT * FROM C WHERE NOT Caption = 'x'"));
        assert!(eval("SELECT * FROM C WHERE 3 > EnabledState"));
        let mut with_ref = inst();
        with_ref.set(
            "Owner",
            Value::Reference(ObjectPath::class(None, "KVM_ComputerSystem").with_key("Name", "x")),
        );
        let isa = |q: &str| {
            Query::parse(Language::Wql, q)
                .unwrap()
                .matches(&with_ref, &|a, b| a == b || b == "CIM_System")
        };
        assert!(isa("SELECT * FROM C WHERE Owner ISA CIM_System"));
        assert!(isa("SELECT * FROM C WHERE Owner ISA 'KVM_ComputerSystem'"));
        assert!(!isa("SELECT * FROM C WHERE Owner ISA CIM_Job"));
        assert!(!isa("SELECT * FROM C WHERE Name ISA CIM_System"));
    }

    #[test]
    fn like_matches_in_polynomial_time() {
        assert!(like("abc", "a%c") && like("abc", "%") && like("", "%") && !like("", "_"));
        assert!(like("a[c", "a[c") && like("x-y", "x[-]y") && !like("abc", "a[^b]c"));
        assert!(like("aXb", "a[W-Z]b") && !like("ab", "a%c") && like("acbc", "a%bc"));
        // 40 wildcards against a 200-character string that almost matches: exponential
        // for a recursive matcher, instant here.
        let s = "a".repeat(200);
        assert!(!like(&s, &format!("{}b", "%a".repeat(40))));
        assert!(like(&s, &"%a".repeat(40)));
    }

    #[test]
    fn errors_give_the_position() {
        let e = Query::parse(Language::Wql, "SELECT * FRM C").unwrap_err();
        assert_eq!(e.code, StatusCode::InvalidQuery);
        assert!(e.description.contains("position 9"), "{}", e.description);
        let e = Query::parse(Language::Wql, "SELECT * FROM C WHERE Name = 'x").unwrap_err();
        assert!(e.description.contains("position 29"), "{}", e.description);
        let e = Query::parse(Language::Wql, "SELECT * FROM C WHERE 1 = 2").unwrap_err();
        assert!(e.description.contains("position 22"), "{}", e.description);
        assert_eq!(
            Language::parse("CQL").unwrap_err().code,
            StatusCode::QueryLanguageNotSupported
        );
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = format!("{}a = 1{}", "(".repeat(65), ")".repeat(65));
        let e = Query::parse(Language::Fql, &deep).unwrap_err();
        assert!(
            e.description.contains("nested deeper than 64"),
            "{}",
            e.description
        );
        assert!(Query::parse(
            Language::Fql,
            &format!("{}a = 1{}", "(".repeat(64), ")".repeat(64))
        )
        .is_ok());
        let nots = format!("{}a = 1", "NOT ".repeat(100));
        assert!(Query::parse(Language::Fql, &nots).is_err());
        let long = vec!["a = 1"; 2000].join(" AND ");
        let e = Query::parse(Language::Fql, &long).unwrap_err();
        assert!(
            e.description.contains("longer than 4096 tokens"),
            "{}",
            e.description
        );
        let ok = vec!["a = 1"; 1000].join(" OR ");
        assert!(Query::parse(Language::Fql, &ok).is_ok());
    }

    #[test]
    fn fql_is_a_bare_condition() {
        let q = Query::parse(Language::Fql, "EnabledState = 2 AND Name = \"vm-web1\"").unwrap();
        assert!(q.matches(&inst(), &|_, _| false));
        assert!(Query::parse(Language::Fql, "Name LIKE 'x'").is_err());
    }
}
