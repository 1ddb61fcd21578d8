//! Encoded CLASS elements, kept for the snapshot of the schema they were written from.
//!
//! Classes change rarely and are large (CIM_ComputerSystem with its qualifiers is 24 KiB of
//! XML), so writing them again for every GetClass and EnumerateClasses spent most of those
//! requests' CPU. A cached element is only ever served for the very schema snapshot it was
//! encoded from: the cache holds that snapshot and starts over when the server's schema is
//! replaced (any class or qualifier change replaces it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cim_schema::{Name, Repository};

use super::encode::{self, ClassFilter};
use crate::dispatch::result::ClassItem;

/// How many bytes of encoded classes the cache holds at most; past it, it starts over.
/// The whole DMTF schema a namespace holds, encoded with qualifiers, fits several times.
const MAX_BYTES: usize = 16 << 20;

/// A class as one request shapes it. PropertyList requests are not cached (see
/// [`ClassXmlCache::write`]), so the key has no property list.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    class: Name,
    local_only: bool,
    include_qualifiers: bool,
    include_class_origin: bool,
}

/// The entries of one schema snapshot.
struct Entries {
    schema: Arc<Repository>,
    classes: HashMap<Key, Arc<str>>,
    bytes: usize,
}

/// Encoded classes, shared by every CIM-XML request of the server.
#[derive(Default)]
pub struct ClassXmlCache {
    entries: Mutex<Option<Entries>>,
}

impl ClassXmlCache {
    /// Writes `item`'s CLASS element to `out`, from the cache when this schema snapshot
    /// already had it written with the same flags.
    pub fn write(&self, out: &mut String, item: &ClassItem) {
        let Some(key) = Self::key(item) else {
            // A PropertyList is a one-off shape: encode it, keep nothing.
            return encode_class(out, item);
        };
        if let Some(xml) = self.lookup(item, &key) {
            out.push_str(&xml);
            return;
        }
        let start = out.len();
        encode_class(out, item);
        self.insert(item, key, Arc::from(&out[start..]));
    }

    fn key(item: &ClassItem) -> Option<Key> {
        let ClassFilter {
            local_only,
            include_qualifiers,
            include_class_origin,
            properties,
        } = &*item.filter;
        properties.is_none().then(|| Key {
            namespace: item.namespace.clone(),
            class: item.class.name.clone(),
            local_only: *local_only,
            include_qualifiers: *include_qualifiers,
            include_class_origin: *include_class_origin,
        })
    }

    fn lookup(&self, item: &ClassItem, key: &Key) -> Option<Arc<str>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entries = entries.as_ref()?;
        if !Arc::ptr_eq(&entries.schema, &item.schema) {
            return None;
        }
        entries.classes.get(key).cloned()
    }

    fn insert(&self, item: &ClassItem, key: Key, xml: Arc<str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let current = entries
            .as_ref()
            .is_some_and(|e| Arc::ptr_eq(&e.schema, &item.schema));
        let full = entries
            .as_ref()
            .is_some_and(|e| e.bytes + xml.len() > MAX_BYTES);
        if !current || full {
            // A request that still holds an older snapshot than the cache's would throw
            // the newer entries away; that costs encoding, never correctness.
            *entries = Some(Entries {
                schema: item.schema.clone(),
                classes: HashMap::new(),
                bytes: 0,
            });
        }
        let entries = entries.as_mut().expect("set above");
        if xml.len() <= MAX_BYTES {
            entries.bytes += xml.len();
            if let Some(old) = entries.classes.insert(key, xml) {
                entries.bytes -= old.len();
            }
        }
    }

    /// The bytes held, for tests.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.as_ref().map_or(0, |e| e.bytes)
    }
}

fn encode_class(out: &mut String, item: &ClassItem) {
    let ns = item.schema.namespace(&item.namespace).ok();
    encode::class(out, &item.class, &item.filter, ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;

    use cim_schema::Class;

    fn schema_with(description: &str) -> Arc<Repository> {
        let mut repo = Repository::new();
        let source = format!(
            "Qualifier Description : string = null, Scope(any), Flavor(Translatable);\n\
             [Description(\"{description}\")] class Test_Widget {{ string Name; uint32 Size; }};"
        );
        cim_schema::mof::Compiler::new(&mut repo, "root/test")
            .compile_str("test.mof", &source)
            .expect("the MOF compiles");
        Arc::new(repo)
    }

    fn item(schema: &Arc<Repository>, filter: ClassFilter) -> ClassItem {
        let class: Arc<Class> = schema
            .namespace("root/test")
            .expect("namespace")
            .class("Test_Widget")
            .cloned()
            .expect("class");
        ClassItem {
            class,
            schema: schema.clone(),
            namespace: "root/test".into(),
            filter: Arc::new(filter),
        }
    }

    fn whole(include_qualifiers: bool) -> ClassFilter {
        ClassFilter {
            local_only: false,
            include_qualifiers,
            include_class_origin: false,
            properties: None,
        }
    }

    fn written(cache: &ClassXmlCache, item: &ClassItem) -> String {
        let mut out = String::from("<prefix/>");
        cache.write(&mut out, item);
        out.strip_prefix("<prefix/>")
            .expect("prefix kept")
            .to_string()
    }

    fn encoded(item: &ClassItem) -> String {
        let mut out = String::new();
        encode_class(&mut out, item);
        out
    }

    #[test]
    fn serves_what_the_encoder_writes_and_keeps_it() {
        let cache = ClassXmlCache::default();
        let schema = schema_with("first");
        let item = item(&schema, whole(true));
        assert_eq!(written(&cache, &item), encoded(&item));
        let held = cache.bytes();
        assert_eq!(held, encoded(&item).len());
        assert_eq!(written(&cache, &item), encoded(&item));
        assert_eq!(
            cache.bytes(),
            held,
            "the second request is served from the cache"
        );
    }

    #[test]
    fn flags_are_part_of_the_key() {
        let cache = ClassXmlCache::default();
        let schema = schema_with("first");
        let with = item(&schema, whole(true));
        let without = item(&schema, whole(false));
        assert_eq!(written(&cache, &with), encoded(&with));
        assert_eq!(written(&cache, &without), encoded(&without));
        assert_ne!(encoded(&with), encoded(&without));
    }

    #[test]
    fn a_new_schema_snapshot_is_never_served_an_old_class() {
        let cache = ClassXmlCache::default();
        let old = item(&schema_with("first"), whole(true));
        let new = item(&schema_with("second"), whole(true));
        assert!(written(&cache, &old).contains("first"));
        let served = written(&cache, &new);
        assert!(served.contains("second") && !served.contains("first"));
    }

    #[test]
    fn property_lists_are_encoded_and_not_kept() {
        let cache = ClassXmlCache::default();
        let schema = schema_with("first");
        let mut filter = whole(true);
        filter.properties = Some(HashSet::from([Name::from("Size")]));
        let item = item(&schema, filter);
        let served = written(&cache, &item);
        assert_eq!(served, encoded(&item));
        assert!(served.contains("Size") && !served.contains("\"Name\""));
        assert_eq!(cache.bytes(), 0);
    }
}
