//! The hypervisor abstraction: what the VMM needs from a VM and a vCPU, independent of the
//! ioctls behind it (as Cloud Hypervisor's `hypervisor` crate does). [`kvm`] implements it.

pub mod kvm;

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId,
};

/// The legacy 4 KiB XSAVE area (x87, SSE and AVX state), which kvm-bindings does not let
/// be cloned.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct XsaveArea(pub kvm_xsave);

impl Clone for XsaveArea {
    fn clone(&self) -> Self {
        XsaveArea(kvm_xsave {
            region: self.0.region,
            ..Default::default()
        })
    }
}
use serde::{Deserialize, Serialize};
use vmm_sys_util::eventfd::EventFd;

/// A failed hypervisor call: which one, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
pub struct HypervisorError {
    /// The ioctl or operation that failed.
    pub call: &'static str,
    /// The error the kernel returned.
    pub source: std::io::Error,
}

impl HypervisorError {
    pub(crate) fn new(call: &'static str, err: impl Into<std::io::Error>) -> Self {
        HypervisorError {
            call,
            source: err.into(),
        }
    }
}

/// Result of a hypervisor call.
pub type Result<T> = std::result::Result<T, HypervisorError>;

/// Why a vCPU left guest mode and needs the VMM.
#[derive(Debug)]
pub enum VcpuExit<'a> {
    /// `in` from a port: fill the buffer.
    IoIn(u16, &'a mut [u8]),
    /// `out` to a port.
    IoOut(u16, &'a [u8]),
    /// A read of unbacked guest-physical memory: fill the buffer.
    MmioRead(u64, &'a mut [u8]),
    /// A write to unbacked guest-physical memory.
    MmioWrite(u64, &'a [u8]),
    /// The guest triple-faulted (or otherwise asked for a shutdown cycle).
    Shutdown,
    /// A platform event: power off, reset or crash, as KVM_SYSTEM_EVENT_*.
    SystemEvent(u32),
    /// KVM could not go on: for an emulation failure, `data` holds the instruction bytes.
    InternalError {
        /// KVM_INTERNAL_ERROR_* suberror.
        suberror: u32,
        /// Extra words KVM gave.
        data: Vec<u64>,
    },
    /// VM entry failed, with the hardware reason.
    FailEntry(u64),
    /// KVM_RUN returned before or while running because of a signal or `immediate_exit`.
    Interrupted,
    /// Another exit reason the VMM does not handle (KVM_EXIT_*).
    Unhandled(&'static str),
}

/// Everything that makes up one vCPU's architectural state, in the order it must be restored.
#[derive(Clone, Serialize, Deserialize)]
pub struct VcpuState {
    /// The CPUID the vCPU was given.
    pub cpuid: Vec<kvm_bindings::kvm_cpuid_entry2>,
    /// Multiprocessing state (runnable, halted, waiting for SIPI).
    pub mp_state: kvm_mp_state,
    /// General-purpose registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// x87, SSE and AVX state.
    pub xsave: XsaveArea,
    /// Extended control registers.
    pub xcrs: kvm_xcrs,
    /// Debug registers.
    pub debug_regs: kvm_debugregs,
    /// The local APIC's registers.
    pub lapic: kvm_lapic_state,
    /// Model-specific registers, as (index, value).
    pub msrs: Vec<(u32, u64)>,
    /// Pending exceptions, interrupts and NMIs.
    pub events: kvm_vcpu_events,
}

/// The VM-wide state the in-kernel devices hold.
#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    /// Master PIC, slave PIC and IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
    /// The i8254 timer.
    pub pit: kvm_pit_state2,
    /// The kvmclock reference.
    pub clock: kvm_clock_data,
}

/// What kind of KVM the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvmKind {
    /// VT-x or AMD-V: guests run at native speed.
    Hardware,
    /// `kvm_pvm`, the software hypervisor for hosts that are themselves VMs: slow exits, no
    /// emulation of some instructions, no guest user space.
    Pvm,
}

/// A hypervisor: creates VMs and answers what the host supports.
pub trait Hypervisor: Send + Sync {
    /// Creates an empty VM with its in-kernel interrupt controllers and timer.
    fn create_vm(&self) -> Result<Box<dyn Vm>>;
    /// The CPUID the host can give a guest.
    fn supported_cpuid(&self) -> Result<CpuId>;
    /// The MSRs whose state a snapshot must carry.
    fn saved_msr_indices(&self) -> Result<Vec<u32>>;
    /// The most vCPUs one VM may have.
    fn max_vcpus(&self) -> u32;
    /// Hardware or software KVM.
    fn kind(&self) -> KvmKind;
}

/// One VM: guest memory, interrupt routing and the VM-wide device state.
pub trait Vm: Send + Sync {
    /// Maps `size` bytes at host address `host` into guest-physical `guest` as memory slot
    /// `slot`, optionally with dirty-page logging.
    ///
    /// # Safety
    /// `host .. host + size` must stay mapped, readable and writable for the VM's life.
    unsafe fn map_memory(
        &self,
        slot: u32,
        guest: u64,
        size: u64,
        host: u64,
        log_dirty: bool,
    ) -> Result<()>;
    /// Raises GSI `gsi` whenever `event` is written.
    fn register_irqfd(&self, event: &EventFd, gsi: u32) -> Result<()>;
    /// Signals `event` instead of exiting to the VMM when the guest writes the 32-bit value
    /// `value` to guest-physical `address` (a virtio queue notification).
    fn register_mmio_ioevent(&self, event: &EventFd, address: u64, value: u32) -> Result<()>;
    /// Creates vCPU `index`.
    fn create_vcpu(&self, index: u32) -> Result<Box<dyn Vcpu>>;
    /// Reads the in-kernel device state.
    fn state(&self) -> Result<VmState>;
    /// Writes back state from [`Vm::state`].
    fn set_state(&self, state: &VmState) -> Result<()>;
    /// The pages guest code wrote in `slot` since the last call, one bit per 4 KiB page.
    fn dirty_log(&self, slot: u32, size: u64) -> Result<Vec<u64>>;
}

/// One virtual CPU.
pub trait Vcpu: Send {
    /// Runs guest code until the next exit the VMM must handle.
    fn run(&mut self) -> Result<VcpuExit<'_>>;
    /// Sets the CPUID the guest sees.
    fn set_cpuid(&self, cpuid: &CpuId) -> Result<()>;
    /// Reads the whole state, for a snapshot or a reset.
    fn state(&self, msr_indices: &[u32]) -> Result<VcpuState>;
    /// Writes back a whole state from [`Vcpu::state`].
    fn set_state(&self, state: &VcpuState) -> Result<()>;
    /// General-purpose registers.
    fn regs(&self) -> Result<kvm_regs>;
    /// Sets general-purpose registers.
    fn set_regs(&self, regs: &kvm_regs) -> Result<()>;
    /// Special registers.
    fn sregs(&self) -> Result<kvm_sregs>;
    /// Sets special registers.
    fn set_sregs(&self, sregs: &kvm_sregs) -> Result<()>;
    /// Sets the FPU state.
    fn set_fpu(&self, fpu: &kvm_fpu) -> Result<()>;
    /// The local APIC.
    fn lapic(&self) -> Result<kvm_lapic_state>;
    /// Sets the local APIC.
    fn set_lapic(&self, lapic: &kvm_lapic_state) -> Result<()>;
    /// Sets MSRs, one at a time where KVM refuses the batch; returns the ones it refused.
    fn set_msrs(&self, msrs: &[(u32, u64)]) -> Result<Vec<u32>>;
    /// Marks the vCPU runnable (an application processor otherwise waits for INIT/SIPI).
    fn make_runnable(&self) -> Result<()>;
    /// Translates a guest-virtual address, for crash reports.
    fn translate(&self, gva: u64) -> Option<u64>;
}
