//! Case-insensitive CIM element names (DSP0004 5.1: names compare without regard to case, but
//! keep the spelling they were declared with).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use indexmap::{Equivalent, IndexMap};

/// A CIM element name: a class, property, method, parameter, qualifier or namespace name.
///
/// Equality, hashing and ordering ignore case (Unicode simple lowercase mapping); `Display` and
/// [`Name::as_str`] give the original spelling. Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct Name(Arc<str>);

impl Name {
    /// Makes a name from its spelling.
    pub fn new(spelling: &str) -> Self {
        Name(Arc::from(spelling))
    }

    /// The name as it was spelled when declared.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names the same element, ignoring case.
    pub fn matches(&self, other: &str) -> bool {
        eq_ignore_case(&self.0, other)
    }
}

/// Compares two names ignoring case.
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Orders two names ignoring case: the canonical order of keys in object paths.
pub fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()));
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// The first item whose name another item also has, ignoring case. Lists from requests can
/// hold tens of thousands of names: past a handful they are sorted (n log n) rather than
/// compared pairwise (n²).
pub fn duplicate_name<T>(items: &[T], name: impl Fn(&T) -> &str) -> Option<&T> {
    const PAIRWISE: usize = 16;
    if items.len() <= PAIRWISE {
        return items
            .iter()
            .enumerate()
            .find(|(i, a)| items[..*i].iter().any(|b| eq_ignore_case(name(a), name(b))))
            .map(|(_, a)| a);
    }
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by(|a, b| cmp_ignore_case(name(a), name(b)));
    sorted
        .windows(2)
        .find(|w| eq_ignore_case(name(w[0]), name(w[1])))
        .map(|w| w[1])
}

/// Feeds the lowercase UTF-8 bytes of `s` to `state`, in chunks so that hashing stays cheap.
pub(crate) fn hash_ignore_case<H: Hasher>(s: &str, state: &mut H) {
    let mut buf = [0u8; 64];
    if s.is_ascii() {
        // The common case: lowercase whole chunks without decoding characters.
        for chunk in s.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_u8(0xff);
        return;
    }
    let mut len = 0;
    for c in s.chars().flat_map(char::to_lowercase) {
        if len + 4 > buf.len() {
            state.write(&buf[..len]);
            len = 0;
        }
        len += c.encode_utf8(&mut buf[len..]).len();
    }
    state.write(&buf[..len]);
    state.write_u8(0xff);
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || eq_ignore_case(&self.0, &other.0)
    }
}
impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_ignore_case(&self.0, state);
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_ignore_case(&self.0, &other.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::new(s)
    }
}
impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Arc::from(s))
    }
}
impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.matches(other)
    }
}
impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.matches(other)
    }
}

/// A borrowed name used to look up a [`NameMap`] without allocating.
#[derive(Clone, Copy)]
struct NameKey<'a>(&'a str);

impl Hash for NameKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_ignore_case(self.0, state);
    }
}
impl Equivalent<Name> for NameKey<'_> {
    fn equivalent(&self, key: &Name) -> bool {
        eq_ignore_case(self.0, key.as_str())
    }
}

/// An insertion-ordered map keyed by case-insensitive [`Name`]s.
///
/// Declaration order matters in CIM (properties are returned and printed in the order they
/// were declared), so this keeps it.
#[derive(Clone)]
pub struct NameMap<V>(IndexMap<Name, V, foldhash::fast::RandomState>);

impl<V> Default for NameMap<V> {
    fn default() -> Self {
        NameMap(IndexMap::default())
    }
}

impl<V: PartialEq> PartialEq for NameMap<V> {
    /// Same entries in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl<V> NameMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `capacity` names.
    pub fn with_capacity(capacity: usize) -> Self {
        NameMap(IndexMap::with_capacity_and_hasher(
            capacity,
            foldhash::fast::RandomState::default(),
        ))
    }

    /// The value named `name`, ignoring case.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0.get(&NameKey(name))
    }
    /// The value named `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        self.0.get_mut(&NameKey(name))
    }
    /// The key as spelled in the map, with its value.
    pub fn get_key_value(&self, name: &str) -> Option<(&Name, &V)> {
        self.0.get_key_value(&NameKey(name))
    }
    /// Whether the map holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(&NameKey(name))
    }
    /// Inserts or replaces (keeping the original position); returns the replaced value.
    pub fn insert(&mut self, name: Name, value: V) -> Option<V> {
        self.0.insert(name, value)
    }
    /// The value named `name`, inserting `make()` first if there is none.
    pub fn get_or_insert_with(&mut self, name: &Name, make: impl FnOnce() -> V) -> &mut V {
        self.0.entry(name.clone()).or_insert_with(make)
    }
    /// Removes `name`, keeping the order of the others.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        self.0.shift_remove(&NameKey(name))
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Name, &V)> + DoubleEndedIterator {
        self.0.iter()
    }
    /// Values in order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + DoubleEndedIterator {
        self.0.values()
    }
    /// Values in order, mutably.
    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut V> {
        self.0.values_mut()
    }
    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Name> + DoubleEndedIterator {
        self.0.keys()
    }
    /// Values in order, consuming the map.
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.0.into_values()
    }
    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Name, &mut V) -> bool) {
        self.0.retain(|k, v| keep(k, v))
    }
}

impl<V: fmt::Debug> fmt::Debug for NameMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl<V> FromIterator<(Name, V)> for NameMap<V> {
    fn from_iter<T: IntoIterator<Item = (Name, V)>>(iter: T) -> Self {
        NameMap(iter.into_iter().collect())
    }
}

impl<'a, V> IntoIterator for &'a NameMap<V> {
    type Item = (&'a Name, &'a V);
    type IntoIter = indexmap::map::Iter<'a, Name, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Whether `s` is a CIM identifier (DSP0004 ANNEX A: a letter or underscore, then letters,
/// digits and underscores; UCS letters count).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_names_are_found_in_short_and_long_lists() {
        fn name<'a>(s: &'a &str) -> &'a str {
            s
        }
        assert_eq!(duplicate_name(&["a", "B", "c"], name), None);
        assert_eq!(duplicate_name(&["a", "B", "b"], name), Some(&"b"));
        let long: Vec<String> = (0..50_000).map(|i| format!("K{i}")).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        assert_eq!(duplicate_name(&long, name), None);
        let mut twice = long.clone();
        twice.push("k49999");
        assert!(duplicate_name(&twice, name).is_some_and(|d| d.eq_ignore_ascii_case("k49999")));
    }

    #[test]
    fn names_ignore_case_but_keep_spelling() {
        let a = Name::new("CIM_ComputerSystem");
        let b = Name::new("cim_computersystem");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "CIM_ComputerSystem");
        let mut m = NameMap::new();
        m.insert(a, 1);
        assert_eq!(m.get("CIM_COMPUTERSYSTEM"), Some(&1));
        assert_eq!(m.keys().next().unwrap().as_str(), "CIM_ComputerSystem");
    }

    #[test]
    fn non_ascii_names_fold_consistently() {
        let a = Name::new("Größe");
        let b = Name::new("GRÖSSE".to_lowercase().replace("ss", "ß").as_str());
        assert_eq!(a, b);
        let mut m = NameMap::new();
        m.insert(a, ());
        assert!(m.contains("GRÖßE"));
    }

    #[test]
    fn ordering_is_case_insensitive() {
        assert_eq!(cmp_ignore_case("b", "A"), Ordering::Greater);
        assert_eq!(cmp_ignore_case("abc", "ABC"), Ordering::Equal);
    }
}
