//! Encoding operation outcomes as CIM-XML response messages. Streamed outcomes are
//! written item by item (see [`ResponseWriter`]) so a large enumeration never sits whole
//! in memory.

use std::sync::Arc;

use cim_schema::{CimType, Value};

use super::class_cache::ClassXmlCache;
use super::encode::{self, PathContext};
use crate::dispatch::result::{Item, Outcome, PullResult, ResultForm};
use crate::error::CimError;

/// The opening and closing of one response message.
pub struct ResponseWriter {
    /// MESSAGE ID.
    pub id: String,
    /// The method name.
    pub method: String,
    /// Intrinsic (IMETHODRESPONSE) or extrinsic (METHODRESPONSE).
    pub intrinsic: bool,
    /// How relative paths are completed.
    pub paths: PathContext,
    /// Classes already encoded.
    pub classes: Arc<ClassXmlCache>,
}

impl ResponseWriter {
    fn element(&self) -> &'static str {
        if self.intrinsic {
            "IMETHODRESPONSE"
        } else {
            "METHODRESPONSE"
        }
    }

    /// Everything up to the first item of a streamed IRETURNVALUE.
    pub fn stream_prefix(&self) -> String {
        let mut out = String::new();
        encode::response_start(&mut out, &self.id);
        out.push('<');
        out.push_str(self.element());
        encode::attr(&mut out, "NAME", &self.method);
        out.push_str("><IRETURNVALUE>");
        out
    }

    /// What follows the last item of a streamed IRETURNVALUE.
    pub fn stream_suffix(&self) -> String {
        let mut out = format!("</IRETURNVALUE></{}>", self.element());
        encode::response_end(&mut out);
        out
    }

    /// A complete error response.
    pub fn error(&self, e: &CimError) -> String {
        let mut out = String::new();
        encode::response_start(&mut out, &self.id);
        out.push('<');
        out.push_str(self.element());
        encode::attr(&mut out, "NAME", &self.method);
        out.push('>');
        encode::error(&mut out, e);
        out.push_str("</");
        out.push_str(self.element());
        out.push('>');
        encode::response_end(&mut out);
        out
    }

    /// Writes one item of a result.
    pub fn item(&self, out: &mut String, item: &Item, form: ResultForm) {
        match (item, form) {
            (
                Item::Instance {
                    object,
                    filter,
                    class,
                },
                form,
            ) => {
                let class = class.as_deref();
                match form {
                    ResultForm::NamedInstance => {
                        out.push_str("<VALUE.NAMEDINSTANCE>");
                        encode::instance_name(out, &object.path);
                        encode::instance(out, &object.instance, filter, class);
                        out.push_str("</VALUE.NAMEDINSTANCE>");
                    }
                    ResultForm::ObjectWithPath => {
                        out.push_str("<VALUE.OBJECTWITHPATH>");
                        encode::instance_path(out, &object.path, &self.paths);
                        encode::instance(out, &object.instance, filter, class);
                        out.push_str("</VALUE.OBJECTWITHPATH>");
                    }
                    ResultForm::InstanceWithPath => {
                        out.push_str("<VALUE.INSTANCEWITHPATH>");
                        encode::instance_path(out, &object.path, &self.paths);
                        encode::instance(out, &object.instance, filter, class);
                        out.push_str("</VALUE.INSTANCEWITHPATH>");
                    }
                    ResultForm::Instance => encode::instance(out, &object.instance, filter, class),
                    ResultForm::InstanceName => encode::instance_name(out, &object.path),
                    ResultForm::ObjectPath => {
                        encode::object_path(out, &object.path, &self.paths, false)
                    }
                    ResultForm::InstancePath => {
                        encode::instance_path(out, &object.path, &self.paths)
                    }
                }
            }
            (Item::Path(path), ResultForm::ObjectPath) => {
                encode::object_path(out, path, &self.paths, false)
            }
            (Item::Path(path), ResultForm::InstanceName) => encode::instance_name(out, path),
            (Item::Path(path), _) => encode::instance_path(out, path, &self.paths),
            (Item::ClassPath(path), _) => encode::object_path(out, path, &self.paths, true),
            (Item::Class(c), _) => {
                let path =
                    cim_schema::ObjectPath::class(Some(c.namespace.clone()), c.class.name.clone());
                out.push_str("<VALUE.OBJECTWITHPATH>");
                encode::class_path(out, &path, &self.paths);
                self.classes.write(out, c);
                out.push_str("</VALUE.OBJECTWITHPATH>");
            }
        }
    }

    fn open(&self, out: &mut String) {
        encode::response_start(out, &self.id);
        out.push('<');
        out.push_str(self.element());
        encode::attr(out, "NAME", &self.method);
        out.push('>');
    }

    fn close(&self, out: &mut String) {
        out.push_str("</");
        out.push_str(self.element());
        out.push('>');
        encode::response_end(out);
    }

    /// A complete response for an outcome that is not a stream. Streams are written with
    /// [`ResponseWriter::stream_prefix`], [`ResponseWriter::item`] and
    /// [`ResponseWriter::stream_suffix`].
    pub fn complete(&self, outcome: &Outcome) -> String {
        let mut out = String::new();
        self.open(&mut out);
        match outcome {
            Outcome::Empty | Outcome::Stream(..) => {}
            Outcome::Class(c) => {
                out.push_str("<IRETURNVALUE>");
                self.classes.write(&mut out, c);
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Classes(cs) => {
                out.push_str("<IRETURNVALUE>");
                for c in cs {
                    self.classes.write(&mut out, c);
                }
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::ClassNames(names) => {
                out.push_str("<IRETURNVALUE>");
                for n in names {
                    encode::class_name(&mut out, n.as_str());
                }
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Qualifier(q) => {
                out.push_str("<IRETURNVALUE>");
                encode::qualifier_declaration(&mut out, q);
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Qualifiers(qs) => {
                out.push_str("<IRETURNVALUE>");
                for q in qs {
                    encode::qualifier_declaration(&mut out, q);
                }
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Instance(item) => {
                out.push_str("<IRETURNVALUE>");
                self.item(&mut out, item, ResultForm::Instance);
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::InstanceName(path) => {
                out.push_str("<IRETURNVALUE>");
                encode::instance_name(&mut out, path);
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Value(v) => {
                out.push_str("<IRETURNVALUE>");
                if let Some(v) = v {
                    encode::value(&mut out, v, None);
                }
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Pull(p) => self.pull(&mut out, p),
            Outcome::Count(n) => {
                out.push_str("<IRETURNVALUE>");
                if let Some(n) = n {
                    out.push_str(&format!("<VALUE>{n}</VALUE>"));
                }
                out.push_str("</IRETURNVALUE>");
            }
            Outcome::Method {
                return_value,
                out: params,
            } => {
                out.push_str("<RETURNVALUE");
                encode::attr(
                    &mut out,
                    "PARAMTYPE",
                    return_value.cim_type().unwrap_or(CimType::UInt32).as_str(),
                );
                out.push('>');
                encode::value(&mut out, return_value, None);
                out.push_str("</RETURNVALUE>");
                for (name, value) in params {
                    out.push_str("<PARAMVALUE");
                    encode::attr(&mut out, "NAME", name.as_str());
                    let ty = match value {
                        Value::Array(items) => {
                            items.iter().flatten().next().and_then(Value::cim_type)
                        }
                        v => v.cim_type(),
                    };
                    let embedded = matches!(value, Value::Instance(_))
                        || matches!(value, Value::Array(items) if items.iter().flatten().any(|v| matches!(v, Value::Instance(_))));
                    if let Some(ty) = ty {
                        encode::attr(
                            &mut out,
                            "PARAMTYPE",
                            if ty == CimType::Reference {
                                "reference"
                            } else {
                                ty.as_str()
                            },
                        );
                    }
                    if embedded {
                        encode::attr(&mut out, "EmbeddedObject", "instance");
                    }
                    out.push('>');
                    encode::value(&mut out, value, None);
                    out.push_str("</PARAMVALUE>");
                }
            }
        }
        self.close(&mut out);
        out
    }

    fn pull(&self, out: &mut String, p: &PullResult) {
        out.push_str("<IRETURNVALUE>");
        for item in &p.items {
            self.item(out, item, p.form);
        }
        out.push_str("</IRETURNVALUE>");
        if let Some(c) = &p.query_result_class {
            out.push_str("<PARAMVALUE NAME=\"QueryResultClass\">");
            self.classes.write(out, c);
            out.push_str("</PARAMVALUE>");
        }
        // DSP0200 makes the context NULL at the end of the sequence; OpenPegasus's server
        // still sends the parameter (empty), and its client (cimcli, TestPullop) refuses a
        // response without it. pywbem ignores the value once EndOfSequence is TRUE.
        out.push_str("<PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"><VALUE>");
        if let Some(ctx) = &p.context {
            encode::text(out, ctx);
        }
        out.push_str("</VALUE></PARAMVALUE>");
        out.push_str("<PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>");
        out.push_str(if p.context.is_none() { "TRUE" } else { "FALSE" });
        out.push_str("</VALUE></PARAMVALUE>");
    }
}
