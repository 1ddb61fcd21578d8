//! The names and addresses a VM's devices get when a client gives none: guest disk names in
//! the order Linux gives them, and locally administered MAC addresses.

use hypervisor_shim::devices::virtio::net::MacAddress;

/// Sorts "vdb" before "vdaa" (as Linux names them: by length, then alphabetically).
pub fn device_order(device: &str) -> (usize, &str) {
    (device.len(), device)
}

/// The guest device name of the `index`th disk: vda ... vdz, vdaa ...
pub fn device_name(index: usize) -> String {
    let mut suffix = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        suffix.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    suffix.reverse();
    format!("vd{}", String::from_utf8_lossy(&suffix))
}

/// A new MAC address in the locally administered range, for a port that is given none.
pub fn random_mac() -> MacAddress {
    let mut random = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
    MacAddress::locally_administered(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_named_and_ordered_as_linux_names_them() {
        assert_eq!(device_name(0), "vda");
        assert_eq!(device_name(25), "vdz");
        assert_eq!(device_name(26), "vdaa");
        assert_eq!(device_name(27), "vdab");
        assert!(device_order("vdb") < device_order("vdaa"));
    }
}
