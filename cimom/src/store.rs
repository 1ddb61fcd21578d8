//! Durable state in an embedded redb database: users, static instances, and the classes,
//! qualifier declarations and namespaces that clients add. Every write is one transaction,
//! committed before the operation is acknowledged.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

/// A database failure (boxed: redb's error is large and failures are rare).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(Box<redb::Error>);

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError(Box::new(e.into()))
            }
        }
    )*};
}
store_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Key `namespace\0canonical-path`, value the instance as CIM-XML.
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
/// Key `namespace\0class`, value `sequence\0CIM-XML` of the declared class.
const CLASSES: TableDefinition<&str, &[u8]> = TableDefinition::new("classes");
/// Key `namespace\0qualifier`, value the QUALIFIER.DECLARATION as CIM-XML.
const QUALIFIERS: TableDefinition<&str, &[u8]> = TableDefinition::new("qualifiers");
/// Key: the namespace name.
const NAMESPACES: TableDefinition<&str, ()> = TableDefinition::new("namespaces");
/// Listener and event sink credentials, by destination path.
const SINK_CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("sink_credentials");

/// Server settings a client changed (the indication service's), by name, as JSON.
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// Indications waiting for delivery: key (destination path, ordinal), value the queued
/// message (JSON). Ordinals grow across restarts, so a destination's rows are in order.
const INDICATION_QUEUE: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("indication_queue");
/// When the server first sent to each listener destination (µs since the epoch): part of
/// its indications' SequenceContext, which must change when the destination is recreated.
const DESTINATIONS: TableDefinition<&str, u64> = TableDefinition::new("indication_destinations");

/// What the raisers of indications recorded with them, written in the transaction that
/// queued them (a VM's last reported state, say): after a crash, a raiser knows exactly
/// what it had raised.
const INDICATION_MARKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("indication_markers");

/// A table of a provider's own records: keys are text, records whatever bytes the provider
/// serializes. Its name is the redb table's and must not be one of the store's own.
#[derive(Clone, Copy, Debug)]
pub struct ProviderTable(&'static str);

/// The store's own tables, which no provider table may be named as.
const OWN_TABLES: [&str; 10] = [
    "users",
    "instances",
    "classes",
    "qualifiers",
    "namespaces",
    "sink_credentials",
    "settings",
    "indication_queue",
    "indication_destinations",
    "indication_markers",
];

impl ProviderTable {
    /// The table `name`.
    ///
    /// # Panics
    /// When `name` is one of the store's own tables (a defect of the provider).
    pub const fn new(name: &'static str) -> Self {
        let mut i = 0;
        while i < OWN_TABLES.len() {
            assert!(
                !const_str_eq(OWN_TABLES[i], name),
                "a provider table cannot be named as one of the store's own"
            );
            i += 1;
        }
        ProviderTable(name)
    }

    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A record loaded from the store: the namespace, the lower-cased name within it, and
/// the serialized object.
pub type Record = (String, String, Vec<u8>);

/// Page cache of the database.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The database.
pub struct Store {
    db: Database,
}

fn split_key(key: &str) -> (String, String) {
    match key.split_once('\0') {
        Some((ns, rest)) => (ns.to_string(), rest.to_string()),
        None => (String::new(), key.to_string()),
    }
}

fn join_key(namespace: &str, name: &str) -> String {
    format!("{}\0{}", namespace.to_lowercase(), name.to_lowercase())
}

/// Instance keys keep the path's case: string key values are case-sensitive.
fn instance_key(namespace: &str, path: &str) -> String {
    format!("{}\0{path}", namespace.to_lowercase())
}

impl Store {
    /// Opens (creating if needed) the database at `path`. Fails if another process (a
    /// running server) has it open.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // redb's default page cache is 1 GiB; the server keeps its own in-memory copy of
        // what it reads, so a small cache is enough.
        // It holds password hashes and listener passwords: the owner's alone, from its
        // creation (redb initializes an empty file), and also when an earlier version
        // created it readable.
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let io = |e: std::io::Error| StoreError(Box::new(redb::Error::Io(e)));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(USERS)?;
        txn.open_table(INSTANCES)?;
        txn.open_table(CLASSES)?;
        txn.open_table(QUALIFIERS)?;
        txn.open_table(NAMESPACES)?;
        txn.open_table(SINK_CREDENTIALS)?;
        txn.open_table(SETTINGS)?;
        txn.open_table(INDICATION_QUEUE)?;
        txn.open_table(DESTINATIONS)?;
        txn.open_table(INDICATION_MARKERS)?;
        txn.commit()?;
        Ok(Store { db })
    }

    fn put(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn remove(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(table)?.remove(key)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    fn all(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores `record` under `key` in a provider's `table`, committed before it returns.
    pub fn put_record(
        &self,
        table: ProviderTable,
        key: &str,
        record: &[u8],
    ) -> Result<(), StoreError> {
        self.put(table.definition(), key, record)
    }

    /// Removes `key` from a provider's `table`; false if it was not there.
    pub fn delete_record(&self, table: ProviderTable, key: &str) -> Result<bool, StoreError> {
        self.remove(table.definition(), key)
    }

    /// Every record of a provider's `table`, as (key, record); none before the first is
    /// stored.
    pub fn records(&self, table: ProviderTable) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(table.definition()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores the credentials (serialized by the caller) for the listener of the
    /// destination whose path is `destination`.
    pub fn put_sink_credentials(&self, destination: &str, record: &[u8]) -> Result<(), StoreError> {
        self.put(SINK_CREDENTIALS, destination, record)
    }

    /// Forgets a destination's sink credentials; false if there were none.
    pub fn delete_sink_credentials(&self, destination: &str) -> Result<bool, StoreError> {
        self.remove(SINK_CREDENTIALS, destination)
    }

    /// All sink credentials as (destination path, record).
    pub fn sink_credentials(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.all(SINK_CREDENTIALS)
    }

    /// A setting stored with [`Store::put_setting`].
    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SETTINGS)?;
        Ok(t.get(name)?.map(|v| v.value().to_vec()))
    }

    /// Stores a setting, committed before it returns.
    pub fn put_setting(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(SETTINGS, name, value)
    }

    /// Queues indications in one transaction, committed before it returns: each row of
    /// `rows` added, then for each `(destination, n)` of `trim` its `n` oldest rows removed,
    /// and `marker` (key, value) recorded.
    pub fn queue_indications(
        &self,
        rows: &[(&str, u64, &[u8])],
        trim: &[(&str, usize)],
        marker: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        if let Some((key, value)) = marker {
            txn.open_table(INDICATION_MARKERS)?.insert(key, value)?;
        }
        {
            let mut t = txn.open_table(INDICATION_QUEUE)?;
            for (destination, ordinal, message) in rows {
                t.insert((*destination, *ordinal), *message)?;
            }
            for (destination, n) in trim {
                remove_queued(&mut t, destination, u64::MAX, *n)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The oldest indication queued for `destination`: its ordinal and message.
    pub fn first_queued(&self, destination: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INDICATION_QUEUE)?;
        let mut rows = t.range((destination, 0)..=(destination, u64::MAX))?;
        Ok(match rows.next() {
            Some(row) => {
                let (k, v) = row?;
                Some((k.value().1, v.value().to_vec()))
            }
            None => None,
        })
    }

    /// Removes the indications queued for `destination` with ordinals up to `last`
    /// (inclusive); returns how many there were.
    pub fn dequeue_through(&self, destination: &str, last: u64) -> Result<usize, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = remove_queued(
            &mut txn.open_table(INDICATION_QUEUE)?,
            destination,
            last,
            usize::MAX,
        )?;
        txn.commit()?;
        Ok(removed)
    }

    /// For each destination with queued indications: how many, and the highest ordinal
    /// (read without copying the messages).
    pub fn queue_summary(&self) -> Result<Vec<(String, usize, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INDICATION_QUEUE)?;
        let mut out: Vec<(String, usize, u64)> = Vec::new();
        for row in t.iter()? {
            let (k, _) = row?;
            let (destination, ordinal) = k.value();
            match out.last_mut() {
                Some((d, n, last)) if d == destination => {
                    *n += 1;
                    *last = ordinal;
                }
                _ => out.push((destination.to_string(), 1, ordinal)),
            }
        }
        Ok(out)
    }

    /// The ordinal of the last of the oldest indications queued for `destination` whose
    /// messages `accept` takes, read in one transaction (`None` when it takes the first
    /// not).
    pub fn last_queued_while(
        &self,
        destination: &str,
        mut accept: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INDICATION_QUEUE)?;
        let mut last = None;
        for row in t.range((destination, 0)..=(destination, u64::MAX))? {
            let (k, v) = row?;
            if !accept(v.value()) {
                break;
            }
            last = Some(k.value().1);
        }
        Ok(last)
    }

    /// When the server first sent to `destination`, recording `now` if it never did.
    pub fn destination_since(&self, destination: &str, now: u64) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let since = {
            let mut t = txn.open_table(DESTINATIONS)?;
            let known = t.get(destination)?.map(|v| v.value());
            match known {
                Some(since) => since,
                None => {
                    t.insert(destination, now)?;
                    now
                }
            }
        };
        txn.commit()?;
        Ok(since)
    }

    /// Forgets a destination: its record and everything queued for it, in one transaction.
    pub fn forget_destination(&self, destination: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(DESTINATIONS)?.remove(destination)?;
            let mut t = txn.open_table(INDICATION_QUEUE)?;
            remove_queued(&mut t, destination, u64::MAX, usize::MAX)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Forgets an indication marker.
    pub fn delete_indication_marker(&self, key: &str) -> Result<bool, StoreError> {
        self.remove(INDICATION_MARKERS, key)
    }

    /// Every indication marker, as (key, value).
    pub fn indication_markers(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.all(INDICATION_MARKERS)
    }

    /// Stores a user record (serialized by the caller) under `name`.
    pub fn put_user(&self, name: &str, record: &[u8]) -> Result<(), StoreError> {
        self.put(USERS, name, record)
    }

    /// Removes a user; false if there was none.
    pub fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.remove(USERS, name)
    }

    /// All users as (name, record).
    pub fn users(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.all(USERS)
    }

    /// Stores a static instance.
    pub fn put_instance(
        &self,
        namespace: &str,
        path_key: &str,
        xml: &[u8],
    ) -> Result<(), StoreError> {
        self.put(INSTANCES, &instance_key(namespace, path_key), xml)
    }

    /// Stores many static instances in one transaction.
    pub fn put_instances<'a>(
        &self,
        namespace: &str,
        rows: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(INSTANCES)?;
            for (key, xml) in rows {
                t.insert(instance_key(namespace, key).as_str(), xml)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes a static instance.
    pub fn delete_instance(&self, namespace: &str, path_key: &str) -> Result<bool, StoreError> {
        self.remove(INSTANCES, &instance_key(namespace, path_key))
    }

    /// Calls `f(namespace, path, xml)` for every static instance, without loading them
    /// all into memory first.
    pub fn for_each_instance(
        &self,
        mut f: impl FnMut(&str, &str, &[u8]),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INSTANCES)?;
        for row in t.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let (ns, path) = key.split_once('\0').unwrap_or(("", key));
            f(ns, path, v.value());
        }
        Ok(())
    }

    /// All static instances.
    pub fn instances(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .all(INSTANCES)?
            .into_iter()
            .map(|(k, v)| {
                let (ns, key) = split_key(&k);
                (ns, key, v)
            })
            .collect())
    }

    /// Stores a class; `sequence` orders classes so superclasses load first.
    pub fn put_class(
        &self,
        namespace: &str,
        class: &str,
        sequence: u64,
        xml: &[u8],
    ) -> Result<(), StoreError> {
        let mut value = format!("{sequence}\0").into_bytes();
        value.extend_from_slice(xml);
        self.put(CLASSES, &join_key(namespace, class), &value)
    }

    /// Removes a class.
    pub fn delete_class(&self, namespace: &str, class: &str) -> Result<bool, StoreError> {
        self.remove(CLASSES, &join_key(namespace, class))
    }

    /// All stored classes in the order they were created, as (sequence, (namespace,
    /// class, xml)).
    pub fn classes(&self) -> Result<Vec<(u64, Record)>, StoreError> {
        let mut rows: Vec<(u64, Record)> = self
            .all(CLASSES)?
            .into_iter()
            .filter_map(|(k, v)| {
                let split = v.iter().position(|&b| b == 0)?;
                let seq = std::str::from_utf8(&v[..split]).ok()?.parse().ok()?;
                let (ns, name) = split_key(&k);
                Some((seq, (ns, name, v[split + 1..].to_vec())))
            })
            .collect();
        rows.sort_by_key(|(seq, _)| *seq);
        Ok(rows)
    }

    /// Stores a qualifier declaration.
    pub fn put_qualifier(&self, namespace: &str, name: &str, xml: &[u8]) -> Result<(), StoreError> {
        self.put(QUALIFIERS, &join_key(namespace, name), xml)
    }

    /// Removes a qualifier declaration.
    pub fn delete_qualifier(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        self.remove(QUALIFIERS, &join_key(namespace, name))
    }

    /// All stored qualifier declarations.
    pub fn qualifiers(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .all(QUALIFIERS)?
            .into_iter()
            .map(|(k, v)| {
                let (ns, name) = split_key(&k);
                (ns, name, v)
            })
            .collect())
    }

    /// Records a namespace created by a client.
    pub fn put_namespace(&self, name: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(NAMESPACES)?.insert(name, ())?;
        txn.commit()?;
        Ok(())
    }

    /// Forgets a namespace created by a client, with the qualifier declarations stored in
    /// it (its classes and instances must be gone already), in one transaction.
    pub fn delete_namespace(&self, name: &str) -> Result<bool, StoreError> {
        let prefix = format!("{}\0", name.to_lowercase());
        let txn = self.db.begin_write()?;
        let existed = {
            let mut qualifiers = txn.open_table(QUALIFIERS)?;
            let keys: Vec<String> = qualifiers
                .iter()?
                .filter_map(|row| row.ok())
                .map(|(k, _)| k.value().to_string())
                .filter(|k| k.starts_with(&prefix))
                .collect();
            for k in keys {
                qualifiers.remove(k.as_str())?;
            }
            let mut namespaces = txn.open_table(NAMESPACES)?;
            let found = namespaces
                .iter()?
                .filter_map(|row| row.ok())
                .map(|(k, _)| k.value().to_string())
                .find(|k| k.eq_ignore_ascii_case(name));
            match found {
                Some(k) => namespaces.remove(k.as_str())?.is_some(),
                None => false,
            }
        };
        txn.commit()?;
        Ok(existed)
    }

    /// Namespaces created by clients.
    pub fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(NAMESPACES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(row?.0.value().to_string());
        }
        Ok(out)
    }
}

/// Removes the oldest rows queued for `destination`, those with ordinals up to `last` and
/// at most `limit` of them; returns how many went.
fn remove_queued(
    table: &mut redb::Table<(&str, u64), &[u8]>,
    destination: &str,
    last: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let ordinals: Vec<u64> = table
        .range((destination, 0)..=(destination, last))?
        .take(limit)
        .map(|row| row.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for ordinal in &ordinals {
        table.remove((destination, *ordinal))?;
    }
    Ok(ordinals.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let s = Store::open(&path).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the database is the owner's alone");
            s.put_user("admin", b"{}").unwrap();
            s.put_instance("root/virt", "/:a.k=1", b"<INSTANCE/>")
                .unwrap();
            s.put_class("root/virt", "B", 2, b"<CLASS NAME=\"B\"/>")
                .unwrap();
            s.put_class("root/virt", "A", 1, b"<CLASS NAME=\"A\"/>")
                .unwrap();
            s.put_qualifier("root/virt", "Q", b"<QUALIFIER.DECLARATION/>")
                .unwrap();
            assert!(s.delete_user("nobody").is_ok_and(|existed| !existed));
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.users().unwrap().len(), 1);
        assert_eq!(s.instances().unwrap()[0].0, "root/virt");
        let classes = s.classes().unwrap();
        assert_eq!(
            (classes[0].1 .1.as_str(), classes[1].1 .1.as_str()),
            ("a", "b")
        );
        assert_eq!(classes[0].1 .2, b"<CLASS NAME=\"A\"/>");
        assert_eq!(s.qualifiers().unwrap().len(), 1);
        assert!(s.delete_instance("root/virt", "/:a.k=1").unwrap());
        assert!(s.instances().unwrap().is_empty());
    }
}
