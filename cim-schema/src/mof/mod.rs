//! The MOF compiler (DSP0221): lexer, parser, compiler into a [`Repository`], and a writer
//! that prints MOF back.
//!
//! ```
//! use cim_schema::{mof, Repository};
//! let mut repo = Repository::new();
//! let text = "Qualifier Key : boolean = false, Scope(property, reference), Flavor(DisableOverride, ToSubclass);
//!             class Demo_Thing { [Key] string Id; uint16 Size = 3; };
//!             instance of Demo_Thing { Id = \"a\"; };";
//! let (summary, _warnings) = mof::Compiler::new(&mut repo, "root/demo").compile_str("demo.mof", text).unwrap();
//! assert_eq!(summary.to_string(), "1 classes, 1 qualifier declarations, 1 instances");
//! assert_eq!(repo.class("root/demo", "demo_thing").unwrap().keys().count(), 1);
//! ```
//!
//! [`Repository`]: crate::Repository

pub mod ast;
mod compiler;
mod diagnostic;
pub mod lexer;
pub mod parser;
mod source;
pub mod writer;

pub use compiler::{parse_instance, Compiler, Summary};
pub use diagnostic::{render, Diagnostic, Severity};
pub use source::{Embedded, FileSystem, SourceProvider};
