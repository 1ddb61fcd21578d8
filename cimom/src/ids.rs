//! Random identifiers: VM UUIDs, job IDs, WS-Addressing message IDs.

/// A random (version 4) UUID.
pub fn random_uuid() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `text` as a UUID in canonical form (8-4-4-4-12 hexadecimal digits, lower case), if it
/// is one.
pub fn parse_uuid(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.trim().split('-').collect();
    let well_formed = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    well_formed.then(|| text.trim().to_ascii_lowercase())
}

/// A random MAC address in the locally administered unicast range (`x2:...`).
pub fn random_mac() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 6];
    rand_core::OsRng.fill_bytes(&mut b);
    b[0] = (b[0] & 0xfc) | 0x02;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_parsed_into_canonical_form() {
        assert_eq!(
            parse_uuid(" 6F9619FF-8B86-D011-B42D-00C04FC964FF ").as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        for bad in [
            "",
            "../../etc",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964fg",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
        assert!(parse_uuid(&random_uuid()).is_some());
    }
}
