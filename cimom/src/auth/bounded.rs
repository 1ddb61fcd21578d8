//! Keeping the maps of remembered clients and credentials to a fixed size.

use std::collections::HashMap;
use std::hash::Hash;

use tokio::time::Instant;

/// Makes room in `map` for `key` before it is inserted, so that it never holds more than
/// `capacity` entries: when `key` is new and the map is full, the entries `expired` says
/// are stale go, and if that frees nothing, the one `since` says is the oldest.
pub(super) fn make_room<K: Hash + Eq + Copy, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    capacity: usize,
    expired: impl Fn(&V) -> bool,
    since: impl Fn(&V) -> Instant,
) {
    if map.len() < capacity || map.contains_key(key) {
        return;
    }
    map.retain(|_, v| !expired(v));
    if map.len() >= capacity {
        if let Some(oldest) = map.iter().min_by_key(|(_, v)| since(v)).map(|(k, _)| *k) {
            map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stale_entries_go_first_then_the_oldest() {
        let now = Instant::now();
        let mut map: HashMap<u8, Instant> = HashMap::new();
        map.insert(1, now - Duration::from_secs(30));
        map.insert(2, now - Duration::from_secs(20));
        map.insert(3, now - Duration::from_secs(10));
        let stale = |at: &Instant| now.duration_since(*at) > Duration::from_secs(25);
        make_room(&mut map, &2, 3, stale, |at| *at);
        assert_eq!(map.len(), 3, "a key already there needs no room");
        make_room(&mut map, &4, 3, stale, |at| *at);
        assert!(
            !map.contains_key(&1) && map.len() == 2,
            "the stale one went"
        );
        map.insert(4, now);
        make_room(&mut map, &5, 3, stale, |at| *at);
        assert!(!map.contains_key(&2) && map.len() == 2, "then the oldest");
    }
}
