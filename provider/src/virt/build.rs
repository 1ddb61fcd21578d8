//! What the instance builders share: an instance's values from its path's keys, and the
//! array values they write.

use cim_schema::{ObjectPath, Value};
use cimom::dispatch::provider::keys_of;

/// `path`'s keys, then `values`.
pub(super) fn with_keys<'a>(
    path: &'a ObjectPath,
    values: Vec<(&'a str, Value)>,
) -> Vec<(&'a str, Value)> {
    let mut all = keys_of(path);
    all.extend(values);
    all
}

/// A uint16 array.
pub(super) fn u16s(values: &[u16]) -> Value {
    Value::Array(values.iter().map(|v| Some(Value::UInt16(*v))).collect())
}
