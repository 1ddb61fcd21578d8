//! [`Hypervisor`], [`Vm`] and [`Vcpu`] on Linux KVM, through kvm-ioctls.

use super::{Hypervisor, HypervisorError, KvmKind, Result, Vcpu, VcpuExit, VcpuState, Vm, VmState};
use kvm_bindings::{
    kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_msr_entry, kvm_pit_config, kvm_regs, kvm_sregs,
    kvm_userspace_memory_region, CpuId, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuExit as KvmExit, VcpuFd, VmFd};
use std::path::Path;
use vmm_sys_util::eventfd::EventFd;

/// Where the VMM puts the three pages Intel VMX needs for real-mode emulation: just below
/// the IOAPIC/LAPIC window, out of the way of guest RAM.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// The usual KVM device.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// The KVM hypervisor behind `/dev/kvm`.
pub struct KvmHypervisor {
    kvm: Kvm,
    kind: KvmKind,
}

impl KvmHypervisor {
    /// Opens the KVM device (normally `/dev/kvm`) and checks the API version.
    pub fn open(device: &Path) -> std::io::Result<Self> {
        let path = std::ffi::CString::new(device.as_os_str().as_encoded_bytes())
            .map_err(std::io::Error::other)?;
        let kvm = Kvm::new_with_path(&path).map_err(std::io::Error::from)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(std::io::Error::other(format!(
                "/dev/kvm speaks API version {version}; cimvirt needs 12"
            )));
        }
        Ok(KvmHypervisor {
            kvm,
            kind: detect_kind(),
        })
    }

    /// The KVM API version (12 on every Linux since 2.6.22).
    pub fn api_version(&self) -> i32 {
        self.kvm.get_api_version()
    }
}

/// `kvm_pvm` loaded means guests run under the software hypervisor.
pub fn detect_kind() -> KvmKind {
    if Path::new("/sys/module/kvm_pvm").exists() {
        KvmKind::Pvm
    } else {
        KvmKind::Hardware
    }
}

impl Hypervisor for KvmHypervisor {
    fn create_vm(&self) -> Result<Box<dyn Vm>> {
        let fd = self
            .kvm
            .create_vm()
            .map_err(|e| HypervisorError::new("KVM_CREATE_VM", e))?;
        fd.set_tss_address(TSS_ADDRESS)
            .map_err(|e| HypervisorError::new("KVM_SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| HypervisorError::new("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| HypervisorError::new("KVM_CREATE_PIT2", e))?;
        Ok(Box::new(KvmVm { fd }))
    }

    fn supported_cpuid(&self) -> Result<CpuId> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| HypervisorError::new("KVM_GET_SUPPORTED_CPUID", e))
    }

    fn saved_msr_indices(&self) -> Result<Vec<u32>> {
        let list = self
            .kvm
            .get_msr_index_list()
            .map_err(|e| HypervisorError::new("KVM_GET_MSR_INDEX_LIST", e))?;
        Ok(list.as_slice().to_vec())
    }

    fn max_vcpus(&self) -> u32 {
        self.kvm.get_max_vcpus() as u32
    }

    fn kind(&self) -> KvmKind {
        self.kind
    }
}

/// A KVM VM.
pub struct KvmVm {
    fd: VmFd,
}

impl Vm for KvmVm {
    unsafe fn map_memory(
        &self,
        slot: u32,
        guest: u64,
        size: u64,
        host: u64,
        log_dirty: bool,
    ) -> Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: guest,
            memory_size: size,
            userspace_addr: host,
            flags: if log_dirty {
                KVM_MEM_LOG_DIRTY_PAGES
            } else {
                0
            },
        };
        // SAFETY: the caller guarantees the host range outlives the VM (this function's own
        // contract).
        unsafe { self.fd.set_user_memory_region(region) }
            .map_err(|e| HypervisorError::new("KVM_SET_USER_MEMORY_REGION", e))
    }

    fn register_irqfd(&self, event: &EventFd, gsi: u32) -> Result<()> {
        self.fd
            .register_irqfd(event, gsi)
            .map_err(|e| HypervisorError::new("KVM_IRQFD", e))
    }

    fn register_mmio_ioevent(&self, event: &EventFd, address: u64, value: u32) -> Result<()> {
        self.fd
            .register_ioevent(event, &IoEventAddress::Mmio(address), value)
            .map_err(|e| HypervisorError::new("KVM_IOEVENTFD", e))
    }

    fn create_vcpu(&self, index: u32) -> Result<Box<dyn Vcpu>> {
        let fd = self
            .fd
            .create_vcpu(u64::from(index))
            .map_err(|e| HypervisorError::new("KVM_CREATE_VCPU", e))?;
        Ok(Box::new(KvmVcpu { fd }))
    }

    fn state(&self) -> Result<VmState> {
        let mut irqchips = Vec::with_capacity(3);
        for chip_id in [
            KVM_IRQCHIP_PIC_MASTER,
            KVM_IRQCHIP_PIC_SLAVE,
            KVM_IRQCHIP_IOAPIC,
        ] {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            self.fd
                .get_irqchip(&mut chip)
                .map_err(|e| HypervisorError::new("KVM_GET_IRQCHIP", e))?;
            irqchips.push(chip);
        }
        Ok(VmState {
            irqchips,
            pit: self
                .fd
                .get_pit2()
                .map_err(|e| HypervisorError::new("KVM_GET_PIT2", e))?,
            clock: self
                .fd
                .get_clock()
                .map_err(|e| HypervisorError::new("KVM_GET_CLOCK", e))?,
        })
    }

    fn set_state(&self, state: &VmState) -> Result<()> {
        self.fd
            .set_pit2(&state.pit)
            .map_err(|e| HypervisorError::new("KVM_SET_PIT2", e))?;
        // Only the clock value carries over; the flags describe the host it was read on.
        let clock = kvm_bindings::kvm_clock_data {
            clock: state.clock.clock,
            ..Default::default()
        };
        self.fd
            .set_clock(&clock)
            .map_err(|e| HypervisorError::new("KVM_SET_CLOCK", e))?;
        for chip in &state.irqchips {
            self.fd
                .set_irqchip(chip)
                .map_err(|e| HypervisorError::new("KVM_SET_IRQCHIP", e))?;
        }
        Ok(())
    }

    fn dirty_log(&self, slot: u32, size: u64) -> Result<Vec<u64>> {
        self.fd
            .get_dirty_log(slot, size as usize)
            .map_err(|e| HypervisorError::new("KVM_GET_DIRTY_LOG", e))
    }
}

/// A KVM vCPU.
pub struct KvmVcpu {
    fd: VcpuFd,
}

impl KvmVcpu {
    /// Reads `indices` in batches; KVM stops a batch at the first MSR it refuses, which is
    /// skipped.
    fn read_msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>> {
        let mut values = Vec::with_capacity(indices.len());
        let mut rest = indices;
        while !rest.is_empty() {
            let batch = &rest[..rest.len().min(MSR_BATCH)];
            let entries: Vec<kvm_msr_entry> = batch
                .iter()
                .map(|&index| kvm_msr_entry {
                    index,
                    ..Default::default()
                })
                .collect();
            let mut msrs =
                Msrs::from_entries(&entries).map_err(|_| msr_batch_error("KVM_GET_MSRS"))?;
            let read = self
                .fd
                .get_msrs(&mut msrs)
                .map_err(|e| HypervisorError::new("KVM_GET_MSRS", e))?;
            values.extend(msrs.as_slice()[..read].iter().map(|e| (e.index, e.data)));
            rest = &rest[skip_refused(read, batch.len())..];
        }
        Ok(values)
    }
}

/// The most MSRs KVM takes in one KVM_GET_MSRS or KVM_SET_MSRS.
const MSR_BATCH: usize = kvm_bindings::KVM_MAX_MSR_ENTRIES;

/// How far a batch of `len` MSRs advanced when KVM processed `done` of them: past the one it
/// refused, if it stopped early.
fn skip_refused(done: usize, len: usize) -> usize {
    if done < len {
        done + 1
    } else {
        len
    }
}

fn msr_batch_error(call: &'static str) -> HypervisorError {
    HypervisorError::new(call, std::io::Error::other("too many MSRs for one batch"))
}

impl Vcpu for KvmVcpu {
    fn run(&mut self) -> Result<VcpuExit<'_>> {
        let fd: *mut VcpuFd = &mut self.fd;
        // SAFETY: `fd` points at `self.fd`, borrowed mutably for this whole call; the only
        // other use of the pointer is in the arms that return no borrow of the run structure.
        let exit = unsafe { (*fd).run() };
        match exit {
            Ok(KvmExit::IoIn(port, data)) => Ok(VcpuExit::IoIn(port, data)),
            Ok(KvmExit::IoOut(port, data)) => Ok(VcpuExit::IoOut(port, data)),
            Ok(KvmExit::MmioRead(addr, data)) => Ok(VcpuExit::MmioRead(addr, data)),
            Ok(KvmExit::MmioWrite(addr, data)) => Ok(VcpuExit::MmioWrite(addr, data)),
            Ok(KvmExit::Shutdown) => Ok(VcpuExit::Shutdown),
            Ok(KvmExit::SystemEvent(kind, _)) => Ok(VcpuExit::SystemEvent(kind)),
            Ok(KvmExit::FailEntry(reason, _)) => Ok(VcpuExit::FailEntry(reason)),
            Ok(KvmExit::Intr) => Ok(VcpuExit::Interrupted),
            Ok(KvmExit::InternalError) => {
                // SAFETY: as above: nothing borrowed from the run structure is alive here.
                let run = unsafe { (*fd).get_kvm_run() };
                // SAFETY: KVM fills the `internal` member of the union for
                // KVM_EXIT_INTERNAL_ERROR, the exit being handled.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                let count = (internal.ndata as usize).min(internal.data.len());
                Ok(VcpuExit::InternalError {
                    suberror: internal.suberror,
                    data: internal.data[..count].to_vec(),
                })
            }
            Ok(KvmExit::Hlt) => Ok(VcpuExit::Unhandled("HLT")),
            Ok(KvmExit::Exception) => Ok(VcpuExit::Unhandled("EXCEPTION")),
            Ok(KvmExit::Debug(_)) => Ok(VcpuExit::Unhandled("DEBUG")),
            Ok(KvmExit::Nmi) => Ok(VcpuExit::Unhandled("NMI")),
            Ok(_) => Ok(VcpuExit::Unhandled("another exit reason")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(VcpuExit::Interrupted)
            }
            Err(e) => Err(HypervisorError::new("KVM_RUN", e)),
        }
    }

    fn set_cpuid(&self, cpuid: &CpuId) -> Result<()> {
        self.fd
            .set_cpuid2(cpuid)
            .map_err(|e| HypervisorError::new("KVM_SET_CPUID2", e))
    }

    fn state(&self, msr_indices: &[u32]) -> Result<VcpuState> {
        let err = |call| move |e| HypervisorError::new(call, e);
        Ok(VcpuState {
            cpuid: self
                .fd
                .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
                .map_err(err("KVM_GET_CPUID2"))?
                .as_slice()
                .to_vec(),
            mp_state: self.fd.get_mp_state().map_err(err("KVM_GET_MP_STATE"))?,
            regs: self.fd.get_regs().map_err(err("KVM_GET_REGS"))?,
            sregs: self.fd.get_sregs().map_err(err("KVM_GET_SREGS"))?,
            xsave: super::XsaveArea(self.fd.get_xsave().map_err(err("KVM_GET_XSAVE"))?),
            xcrs: self.fd.get_xcrs().map_err(err("KVM_GET_XCRS"))?,
            debug_regs: self.fd.get_debug_regs().map_err(err("KVM_GET_DEBUGREGS"))?,
            lapic: self.fd.get_lapic().map_err(err("KVM_GET_LAPIC"))?,
            msrs: self.read_msrs(msr_indices)?,
            events: self
                .fd
                .get_vcpu_events()
                .map_err(err("KVM_GET_VCPU_EVENTS"))?,
        })
    }

    fn set_state(&self, state: &VcpuState) -> Result<()> {
        let err = |call| move |e| HypervisorError::new(call, e);
        // The order follows what KVM needs: CPUID first (it decides which MSRs and XSAVE
        // features exist), the LAPIC before MSRs (the TSC deadline depends on it), events last.
        let cpuid =
            CpuId::from_entries(&state.cpuid).map_err(|_| msr_batch_error("KVM_SET_CPUID2"))?;
        self.set_cpuid(&cpuid)?;
        self.fd
            .set_mp_state(state.mp_state)
            .map_err(err("KVM_SET_MP_STATE"))?;
        self.fd.set_regs(&state.regs).map_err(err("KVM_SET_REGS"))?;
        self.fd
            .set_sregs(&state.sregs)
            .map_err(err("KVM_SET_SREGS"))?;
        // SAFETY: the buffer came from KVM_GET_XSAVE, the legacy 4 KiB layout this call takes.
        unsafe { self.fd.set_xsave(&state.xsave.0) }.map_err(err("KVM_SET_XSAVE"))?;
        self.fd.set_xcrs(&state.xcrs).map_err(err("KVM_SET_XCRS"))?;
        self.fd
            .set_debug_regs(&state.debug_regs)
            .map_err(err("KVM_SET_DEBUGREGS"))?;
        self.fd
            .set_lapic(&state.lapic)
            .map_err(err("KVM_SET_LAPIC"))?;
        let refused = self.set_msrs(&state.msrs)?;
        if !refused.is_empty() {
            tracing::debug!(?refused, "KVM refused some saved MSRs");
        }
        self.fd
            .set_vcpu_events(&state.events)
            .map_err(err("KVM_SET_VCPU_EVENTS"))?;
        Ok(())
    }

    fn regs(&self) -> Result<kvm_regs> {
        self.fd
            .get_regs()
            .map_err(|e| HypervisorError::new("KVM_GET_REGS", e))
    }

    fn set_regs(&self, regs: &kvm_regs) -> Result<()> {
        self.fd
            .set_regs(regs)
            .map_err(|e| HypervisorError::new("KVM_SET_REGS", e))
    }

    fn sregs(&self) -> Result<kvm_sregs> {
        self.fd
            .get_sregs()
            .map_err(|e| HypervisorError::new("KVM_GET_SREGS", e))
    }

    fn set_sregs(&self, sregs: &kvm_sregs) -> Result<()> {
        self.fd
            .set_sregs(sregs)
            .map_err(|e| HypervisorError::new("KVM_SET_SREGS", e))
    }

    fn set_fpu(&self, fpu: &kvm_fpu) -> Result<()> {
        self.fd
            .set_fpu(fpu)
            .map_err(|e| HypervisorError::new("KVM_SET_FPU", e))
    }

    fn lapic(&self) -> Result<kvm_lapic_state> {
        self.fd
            .get_lapic()
            .map_err(|e| HypervisorError::new("KVM_GET_LAPIC", e))
    }

    fn set_lapic(&self, lapic: &kvm_lapic_state) -> Result<()> {
        self.fd
            .set_lapic(lapic)
            .map_err(|e| HypervisorError::new("KVM_SET_LAPIC", e))
    }

    fn set_msrs(&self, msrs: &[(u32, u64)]) -> Result<Vec<u32>> {
        let entries: Vec<kvm_msr_entry> = msrs
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let mut refused = Vec::new();
        let mut rest = &entries[..];
        while !rest.is_empty() {
            let batch = &rest[..rest.len().min(MSR_BATCH)];
            let msrs = Msrs::from_entries(batch).map_err(|_| msr_batch_error("KVM_SET_MSRS"))?;
            let written = self
                .fd
                .set_msrs(&msrs)
                .map_err(|e| HypervisorError::new("KVM_SET_MSRS", e))?;
            if written < batch.len() {
                refused.push(batch[written].index);
            }
            rest = &rest[skip_refused(written, batch.len())..];
        }
        Ok(refused)
    }

    fn make_runnable(&self) -> Result<()> {
        let state = kvm_bindings::kvm_mp_state {
            mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
        };
        self.fd
            .set_mp_state(state)
            .map_err(|e| HypervisorError::new("KVM_SET_MP_STATE", e))
    }

    fn translate(&self, gva: u64) -> Option<u64> {
        let t = self.fd.translate_gva(gva).ok()?;
        (t.valid != 0).then_some(t.physical_address)
    }
}
