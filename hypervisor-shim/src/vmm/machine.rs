//! Building a machine: the KVM VM, its memory, devices and vCPUs, the boot image, and the
//! power-on state a reset goes back to.

use super::config::{Boot, VmConfig};
use crate::arch::linux::{self, LinuxEntry};
use crate::arch::{acpi, cpuid, layout as arch_layout, mptable, paging, regs};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::bus::VirtioBus;
use crate::devices::virtio::layout as virtio_layout;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::devices::{console::Console, i8042, Devices, DevicesState, PlatformEvent, COM1_GSI};
use crate::guest::test_guest::{self, layout};
use crate::hypervisor::{Hypervisor, Vcpu, VcpuState, Vm, VmState};
use crate::memory::Memory;
use crate::{lock, Error};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// The state a reset puts the machine back in.
#[derive(Clone, Serialize, Deserialize)]
pub struct PowerOnState {
    /// Each vCPU at its entry point.
    pub vcpus: Vec<VcpuState>,
    /// The in-kernel interrupt controllers and PIT.
    pub vm: VmState,
    /// The devices.
    pub devices: DevicesState,
}

/// A built machine, before its vCPUs are handed to threads.
pub struct Machine {
    /// The definition.
    pub config: VmConfig,
    /// The KVM VM.
    pub vm: Box<dyn Vm>,
    /// Guest RAM.
    pub memory: Arc<Memory>,
    /// The port-I/O devices.
    pub devices: Arc<Mutex<Devices>>,
    /// The virtio devices, on MMIO.
    pub virtio: Arc<VirtioBus>,
    /// MSRs a vCPU state carries.
    pub msr_indices: Vec<u32>,
    /// Whether KVM logs the pages guest code writes.
    dirty_logging: bool,
    /// What a reset goes back to.
    pub power_on: PowerOnState,
    /// A Linux guest's kernel and initramfs, opened at the start for every reset (or why
    /// they could not be, for a machine restored from a snapshot, which needs them only
    /// when it resets).
    linux_files: Result<Option<LinuxFiles>, String>,
}

/// A Linux guest's boot images, open.
struct LinuxFiles {
    kernel: linux::ImageFile,
    initramfs: Option<linux::ImageFile>,
}

impl LinuxFiles {
    fn open(boot: &Boot) -> Result<Option<LinuxFiles>, linux::LinuxBootError> {
        let Boot::Linux {
            kernel, initramfs, ..
        } = boot
        else {
            return Ok(None);
        };
        Ok(Some(LinuxFiles {
            kernel: linux::ImageFile::open("kernel", kernel)?,
            initramfs: initramfs
                .as_deref()
                .map(|path| linux::ImageFile::open("initramfs", path))
                .transpose()?,
        }))
    }
}

/// How a machine comes up: booted fresh, or from a snapshot's saved state.
pub enum Origin<'a> {
    /// Boot from the configuration.
    Boot,
    /// Take over memory and state from a snapshot.
    Snapshot {
        /// The snapshot's guest memory, mapped.
        memory: Memory,
        /// The snapshot's vCPU, VM and device state.
        state: &'a super::snapshot::MachineState,
    },
}

impl Machine {
    /// Builds the machine for `config`; `console` takes COM1's output and `platform` hears
    /// power-off and reset requests from the devices.
    pub fn build(
        hypervisor: &dyn Hypervisor,
        config: VmConfig,
        console: Console,
        platform: Box<dyn Fn(PlatformEvent) + Send>,
        origin: Origin<'_>,
    ) -> Result<(Machine, Vec<Box<dyn Vcpu>>), Error> {
        config
            .validate(hypervisor.max_vcpus())
            .map_err(Error::Config)?;
        let vm = hypervisor.create_vm()?;
        let (memory, saved) = match origin {
            Origin::Boot => (
                Memory::anonymous(config.memory_bytes()).map_err(Error::Memory)?,
                None,
            ),
            Origin::Snapshot { memory, state } => (memory, Some(state)),
        };
        map_guest_memory(&*vm, &memory, false)?;
        let memory = Arc::new(memory);
        let virtio = Arc::new(build_virtio(&*vm, &config, &memory)?);
        let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::Io)?;
        let keyboard_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::Io)?;
        vm.register_irqfd(&serial_irq, COM1_GSI)?;
        vm.register_irqfd(&keyboard_irq, i8042::KEYBOARD_GSI)?;
        let power_button_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::Io)?;
        vm.register_irqfd(&power_button_irq, acpi::POWER_BUTTON_GSI)?;
        let devices = Devices::new(
            console,
            serial_irq,
            keyboard_irq,
            power_button_irq,
            config.memory_bytes(),
            platform,
        )
        .map_err(Error::Io)?;
        let msr_indices = hypervisor.saved_msr_indices()?;
        let linux_files = match LinuxFiles::open(&config.boot) {
            Ok(files) => Ok(files),
            Err(e) if saved.is_some() => Err(e.to_string()),
            Err(e) => return Err(e.into()),
        };

        let mut vcpus = Vec::with_capacity(config.vcpus as usize);
        for index in 0..config.vcpus {
            vcpus.push(vm.create_vcpu(index)?);
        }
        let mut machine = Machine {
            power_on: PowerOnState {
                vcpus: Vec::new(),
                vm: vm.state()?,
                devices: devices.state(),
            },
            config,
            vm,
            memory,
            devices: Arc::new(Mutex::new(devices)),
            virtio,
            msr_indices,
            dirty_logging: false,
            linux_files,
        };
        match saved {
            None => {
                let entry = machine.load_boot_image()?;
                let cpuid = hypervisor.supported_cpuid()?;
                for (index, vcpu) in vcpus.iter().enumerate() {
                    configure_vcpu(
                        &**vcpu,
                        cpuid.clone(),
                        index as u32,
                        machine.config.vcpus,
                        entry,
                    )?;
                }
                machine.power_on.vcpus = vcpus
                    .iter()
                    .map(|v| v.state(&machine.msr_indices))
                    .collect::<Result<_, _>>()?;
            }
            Some(state) => {
                if state.vcpus.len() != vcpus.len() {
                    return Err(Error::Snapshot(format!(
                        "the snapshot has {} vCPUs, its configuration {}",
                        state.vcpus.len(),
                        vcpus.len()
                    )));
                }
                machine.vm.set_state(&state.vm)?;
                for (vcpu, saved) in vcpus.iter().zip(&state.vcpus) {
                    vcpu.set_state(saved)?;
                }
                lock(&machine.devices)
                    .restore(&state.devices)
                    .map_err(Error::Io)?;
                machine
                    .virtio
                    .restore(&state.virtio)
                    .map_err(Error::Snapshot)?;
                machine.power_on = state.power_on.clone();
            }
        }
        Ok((machine, vcpus))
    }

    /// Writes the boot image (and what it is told about the machine), the boot GDT and the
    /// page tables into guest memory; returns how the vCPUs enter it.
    pub fn load_boot_image(&self) -> Result<BootEntry, Error> {
        let mem = &self.memory.guest;
        let linux = match &self.config.boot {
            Boot::TestGuest => {
                mem.write_slice(test_guest::image(), GuestAddress(layout::CODE))?;
                let mut info = [0u8; 32];
                info[..8].copy_from_slice(&layout::INFO_MAGIC.to_le_bytes());
                info[8..12].copy_from_slice(&self.config.vcpus.to_le_bytes());
                info[16..24].copy_from_slice(&self.config.memory_bytes().to_le_bytes());
                mem.write_slice(&info, GuestAddress(layout::INFO))?;
                None
            }
            Boot::Linux {
                kernel, cmdline, ..
            } => {
                let files = match &self.linux_files {
                    Ok(Some(files)) => files,
                    Ok(None) => return Err(Error::Config("no Linux boot images are open".into())),
                    Err(why) => {
                        return Err(Error::Config(format!("reloading the boot image: {why}")))
                    }
                };
                let rsdp = acpi::write_tables(mem, self.config.vcpus, self.virtio.len())?;
                let loaded = linux::load(
                    mem,
                    self.config.memory_bytes(),
                    &linux::LinuxImage {
                        kernel: &files.kernel,
                        initramfs: files.initramfs.as_ref(),
                        cmdline,
                        rsdp: Some(rsdp),
                    },
                )?;
                tracing::info!(
                    kernel = %kernel.display(),
                    format = ?loaded.format,
                    entry = ?loaded.entry,
                    initramfs = ?loaded.initramfs,
                    "Linux kernel loaded"
                );
                Some(loaded.entry)
            }
        };
        mptable::write(mem, self.config.vcpus).map_err(Error::Config)?;
        regs::write_descriptor_tables(mem)?;
        let cr3 = paging::write_identity_map(mem)?;
        Ok(match linux {
            None => BootEntry::TestGuest { cr3 },
            Some(entry) => BootEntry::Linux { cr3, entry },
        })
    }

    /// Guest page frame numbers written since the last call, by the guest (the KVM dirty
    /// log) or by the VMM; the first call turns KVM's logging on and reports only the VMM's
    /// writes. Incremental snapshots and live migration build on this.
    pub fn take_dirty_pages(&mut self) -> Result<Vec<u64>, Error> {
        let mut pages = self.memory.take_vmm_dirty_pages();
        if !self.dirty_logging {
            map_guest_memory(&*self.vm, &self.memory, true)?;
            self.dirty_logging = true;
        } else {
            for (slot, region) in self.memory.guest.iter().enumerate() {
                let first = region.start_addr().0 / 4096;
                let words = self.vm.dirty_log(slot as u32, region.len())?;
                for (w, word) in words.iter().enumerate() {
                    pages.extend(
                        (0..64)
                            .filter(|bit| word >> bit & 1 == 1)
                            .map(|bit| first + (w * 64 + bit) as u64),
                    );
                }
            }
        }
        pages.sort_unstable();
        pages.dedup();
        Ok(pages)
    }

    /// The test guest's heartbeat counters (empty for other boot images).
    pub fn heartbeats(&self) -> Vec<u64> {
        heartbeats(&self.config, &self.memory)
    }
}

/// How the vCPUs enter the guest.
#[derive(Clone, Copy, Debug)]
pub enum BootEntry {
    /// Every vCPU at the test guest's entry in long mode through `cr3`, each with its own
    /// stack and its index in `rdi`.
    TestGuest {
        /// The identity map's root.
        cr3: u64,
    },
    /// The boot vCPU at the kernel's entry; the others wait for the INIT/SIPI the kernel
    /// sends them, as on a PC.
    Linux {
        /// The identity map's root, for a 64-bit entry.
        cr3: u64,
        /// The kernel's entry.
        entry: LinuxEntry,
    },
}

/// The virtio devices of `config`, disks then network ports, each with its interrupt line
/// (an irqfd) and its queue notifications (ioeventfds, so that a notification wakes the I/O
/// thread without a VM exit to the VMM).
fn build_virtio(vm: &dyn Vm, config: &VmConfig, memory: &Arc<Memory>) -> Result<VirtioBus, Error> {
    use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (index, disk) in config.disks.iter().enumerate() {
        let device = Block::new(disk, format!("virtio-blk{index}"))
            .map_err(|e| Error::Config(e.to_string()))?;
        devices.push(Box::new(device));
    }
    for (index, nic) in config.nics.iter().enumerate() {
        let device = Net::new(nic, &config.name, index)
            .map_err(|e| Error::Config(format!("network port {index}: {e}")))?;
        tracing::info!(index, tap = device.tap_name(), mac = %device.mac(), "network port ready");
        devices.push(Box::new(device));
    }
    let mut transports = Vec::with_capacity(devices.len());
    for (index, device) in devices.into_iter().enumerate() {
        let line = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::Io)?;
        vm.register_irqfd(&line, virtio_layout::GSIS[index])?;
        let notify = virtio_layout::mmio_address(index) + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY);
        let mut events = Vec::new();
        for queue in 0..device.queue_max_sizes().len() {
            let event = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::Io)?;
            // Without it the transport signals the eventfd on the MMIO exit instead.
            if let Err(e) = vm.register_mmio_ioevent(&event, notify, queue as u32) {
                tracing::warn!("virtio device {index}: {e}; notifications will exit to the VMM");
            }
            events.push(event);
        }
        let transport = MmioTransport::new(
            device,
            memory.clone(),
            Arc::new(Interrupt::new(line)),
            events,
        )
        .map_err(Error::Io)?;
        transports.push(transport);
    }
    Ok(VirtioBus::new(transports))
}

/// Gives the VM every region of `memory`, as one slot each.
fn map_guest_memory(vm: &dyn Vm, memory: &Memory, log_dirty: bool) -> Result<(), Error> {
    for (slot, region) in memory.guest.iter().enumerate() {
        // SAFETY: the region stays mapped as long as `memory`, which the `Machine` owning the
        // VM keeps alive as long as the VM.
        unsafe {
            vm.map_memory(
                slot as u32,
                region.start_addr().0,
                region.len(),
                region.as_ptr() as u64,
                log_dirty,
            )?;
        }
    }
    Ok(())
}

/// Reads the test guest's heartbeat counters from `memory`.
pub fn heartbeats(config: &VmConfig, memory: &Memory) -> Vec<u64> {
    match config.boot {
        Boot::Linux { .. } => Vec::new(),
        Boot::TestGuest => (0..u64::from(config.vcpus))
            .map(|i| {
                memory
                    .guest
                    .read_obj::<u64>(GuestAddress(layout::HEARTBEAT + i * 8))
                    .unwrap_or(0)
            })
            .collect(),
    }
}

fn configure_vcpu(
    vcpu: &dyn Vcpu,
    mut cpuid: kvm_bindings::CpuId,
    index: u32,
    count: u32,
    entry: BootEntry,
) -> Result<(), Error> {
    cpuid::for_vcpu(&mut cpuid, index, count);
    vcpu.set_cpuid(&cpuid)?;
    let refused = vcpu.set_msrs(&regs::boot_msrs())?;
    if !refused.is_empty() {
        tracing::debug!(index, ?refused, "KVM refused some boot MSRs");
    }
    vcpu.set_lapic(&regs::with_lint_pins(vcpu.lapic()?))?;
    match entry {
        BootEntry::TestGuest { cr3 } => {
            vcpu.set_sregs(&regs::long_mode_sregs(vcpu.sregs()?, cr3))?;
            vcpu.set_fpu(&regs::boot_fpu())?;
            let stack_top = layout::STACKS + (u64::from(index) + 1) * 4096;
            vcpu.set_regs(&regs::entry_regs(
                layout::CODE,
                stack_top,
                u64::from(index),
                0,
            ))?;
            // The test guest needs no INIT/SIPI: every vCPU starts at its entry point.
            vcpu.make_runnable()?;
        }
        // Application processors keep their reset state until the kernel starts them.
        BootEntry::Linux { .. } if index != 0 => {}
        BootEntry::Linux { cr3, entry } => {
            vcpu.set_fpu(&regs::boot_fpu())?;
            match entry {
                LinuxEntry::Long64 { rip, boot_params } => {
                    vcpu.set_sregs(&regs::long_mode_sregs(vcpu.sregs()?, cr3))?;
                    vcpu.set_regs(&regs::entry_regs(
                        rip,
                        arch_layout::LINUX_BOOT_STACK,
                        0,
                        boot_params,
                    ))?;
                }
                LinuxEntry::Pvh { rip, start_info } => {
                    vcpu.set_sregs(&regs::pvh_sregs(vcpu.sregs()?))?;
                    vcpu.set_regs(&regs::pvh_regs(rip, start_info))?;
                }
            }
        }
    }
    Ok(())
}
