//! The CPUID a vCPU sees: what KVM supports, with this vCPU's topology written in.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

/// Patches `cpuid` (from KVM_GET_SUPPORTED_CPUID) for vCPU `index` of `count`: APIC IDs in
/// leaves 1, 0xB and 0x1F, the logical-processor count, and the hypervisor bit.
pub fn for_vcpu(cpuid: &mut CpuId, index: u32, count: u32) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (entry.ebx & 0x0000_ffff) | (index << 24) | (count.min(255) << 16);
                entry.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    entry.edx |= EDX_HTT;
                }
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => entry.edx = index,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn apic_ids_and_counts_are_written_in() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xff00_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                edx: 7,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        for_vcpu(&mut cpuid, 3, 4);
        let leaf1 = cpuid.as_slice()[0];
        assert_eq!(leaf1.ebx, 0x0304_0800);
        assert_ne!(leaf1.ecx & ECX_HYPERVISOR, 0);
        assert_eq!(cpuid.as_slice()[1].edx, 3);
    }
}
