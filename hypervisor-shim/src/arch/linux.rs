//! The Linux boot protocols (Documentation/arch/x86/boot.rst and Xen's PVH ABI): the kernel
//! and initramfs loaded by linux-loader, the command line, the memory map, and the zero page
//! or PVH start info that tells the kernel where everything is.
//!
//! Three kinds of image are booted:
//! - a bzImage, entered at its 64-bit entry point (the kernel's own decompressor runs);
//! - an ELF vmlinux with a PVH note, entered in 32-bit protected mode at that note's entry
//!   (no decompressor, as Firecracker and Cloud Hypervisor boot);
//! - an ELF vmlinux without one, entered at its 64-bit `startup_64`.

use super::layout::{self, ram_ranges};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{
    load_cmdline, BzImage, Cmdline, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability,
};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

/// Where the boot vCPU starts, and with what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxEntry {
    /// 64-bit long mode at `rip` with the zero page's address in `rsi`.
    Long64 {
        /// The kernel's 64-bit entry point.
        rip: u64,
        /// The zero page (`struct boot_params`).
        boot_params: u64,
    },
    /// 32-bit protected mode without paging at `rip` with the start info's address in `rbx`.
    Pvh {
        /// The PVH entry point from the ELF note.
        rip: u64,
        /// The `hvm_start_info` structure.
        start_info: u64,
    },
}

/// What the boot image turned out to be, for logs and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// A compressed bzImage.
    BzImage,
    /// An uncompressed ELF vmlinux booted through PVH.
    ElfPvh,
    /// An uncompressed ELF vmlinux booted at its 64-bit entry.
    Elf64,
}

/// What was loaded, and how to enter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    /// The image's format.
    pub format: KernelFormat,
    /// The boot vCPU's entry.
    pub entry: LinuxEntry,
    /// The initramfs's guest-physical address and size, if there is one.
    pub initramfs: Option<(u64, u64)>,
}

/// The command line the VMM always gives: the console on COM1, from the kernel's first
/// messages on (so a boot that fails early still says how far it got; the early console
/// hands over to the real one without repeating lines), a reset through the i8042 (the only
/// reset line this PC has), a reboot on panic so the VMM sees it, and an i8042 with only a
/// keyboard behind it.
pub const BASE_CMDLINE: &str = "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=1 \
                                i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

/// The largest command line accepted (the kernel's COMMAND_LINE_SIZE on x86 is 2048).
pub const CMDLINE_MAX: usize = 2048;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const HDRS_MAGIC: u32 = 0x5372_6448;
const BOOT_FLAG: u16 = 0xaa55;
const LOADER_UNDEFINED: u8 = 0xff;
const XLF_KERNEL_64: u16 = 1;
/// The 64-bit entry sits this far into a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// The alignment a vmlinux's boot_params announce (CONFIG_PHYSICAL_ALIGN's default).
const KERNEL_ALIGNMENT: u32 = 0x100_0000;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
/// Where an initramfs may end at the latest when the header gives no limit (boot protocol
/// before 2.03).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// Why a Linux image could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    /// A file could not be read.
    #[error("{what} {path}: {source}")]
    File {
        /// "kernel" or "initramfs".
        what: &'static str,
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The kernel image was refused by the loader.
    #[error("kernel {path}: {reason}")]
    Kernel {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The command line is too long or not valid.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// The initramfs does not fit below the kernel's limit.
    #[error("initramfs {path} ({size} bytes) does not fit in guest memory below {limit:#x} above the kernel: give the VM more memory")]
    InitramfsTooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The highest address it may end at.
        limit: u64,
    },
    /// The boot structures could not be written.
    #[error("boot parameters: {0}")]
    BootParams(String),
}

/// The full command line: [`BASE_CMDLINE`], then `extra` (the VM's own arguments, which
/// come later and so win where the kernel takes the last value).
pub fn command_line(extra: &str) -> Result<Cmdline, LinuxBootError> {
    let mut cmdline =
        Cmdline::new(CMDLINE_MAX).map_err(|e| LinuxBootError::Cmdline(e.to_string()))?;
    for part in [BASE_CMDLINE, extra.trim()] {
        if !part.is_empty() {
            cmdline
                .insert_str(part)
                .map_err(|e| LinuxBootError::Cmdline(e.to_string()))?;
        }
    }
    Ok(cmdline)
}

/// The guest's memory map: RAM below the EBDA, the EBDA and BIOS area reserved (the MP table
/// lives there), and RAM from 1 MiB up, split around the MMIO window.
pub fn memory_map(memory_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, layout::EBDA_START, E820_RAM),
        (
            layout::EBDA_START,
            layout::HIGH_MEMORY - layout::EBDA_START,
            E820_RESERVED,
        ),
    ];
    for (start, size) in ram_ranges(memory_size) {
        let start_above_bios = start.max(layout::HIGH_MEMORY);
        let end = start + size;
        if end > start_above_bios {
            map.push((start_above_bios, end - start_above_bios, E820_RAM));
        }
    }
    map
}

/// A kernel or initramfs, opened when the VM process starts and kept for every reset: a
/// confined process names no file.
#[derive(Debug)]
pub struct ImageFile {
    path: PathBuf,
    file: File,
}

impl ImageFile {
    /// Opens `path`; `what` ("kernel", "initramfs") names it in the error.
    pub fn open(what: &'static str, path: &Path) -> Result<ImageFile, LinuxBootError> {
        let file = File::open(path).map_err(|source| LinuxBootError::File {
            what,
            path: path.display().to_string(),
            source,
        })?;
        Ok(ImageFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file, read from its start.
    fn rewound(&self, what: &'static str) -> Result<&File, LinuxBootError> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))
            .map_err(|source| LinuxBootError::File {
                what,
                path: self.path.display().to_string(),
                source,
            })?;
        Ok(file)
    }
}

/// What to boot, and where the firmware tables are.
pub struct LinuxImage<'a> {
    /// The kernel image.
    pub kernel: &'a ImageFile,
    /// The initramfs, if any.
    pub initramfs: Option<&'a ImageFile>,
    /// The VM's own command-line arguments.
    pub cmdline: &'a str,
    /// The ACPI RSDP's address, if the VMM wrote ACPI tables.
    pub rsdp: Option<u64>,
}

/// Loads `image` into `mem` for a guest of `memory_size` bytes, and writes the zero page or
/// PVH start info.
pub fn load<M: GuestMemoryBackend>(
    mem: &M,
    memory_size: u64,
    image: &LinuxImage<'_>,
) -> Result<LoadedKernel, LinuxBootError> {
    let LinuxImage {
        kernel,
        initramfs,
        cmdline: extra,
        rsdp,
    } = *image;
    let kernel_name = kernel.path.display().to_string();
    let mut image = kernel.rewound("kernel")?;
    let mut magic = [0u8; 4];
    let is_elf = image.read_exact(&mut magic).is_ok() && &magic == ELF_MAGIC;
    let mut image = kernel.rewound("kernel")?;
    let high = Some(GuestAddress(layout::HIGH_MEMORY));
    let refused = |e: linux_loader::loader::Error| LinuxBootError::Kernel {
        path: kernel_name.clone(),
        reason: e.to_string(),
    };
    let loaded = if is_elf {
        Elf::load(mem, None, &mut image, high).map_err(refused)?
    } else {
        BzImage::load(mem, None, &mut image, high).map_err(refused)?
    };
    if let Some(header) = loaded.setup_header.filter(|_| !is_elf) {
        // The decompressor unpacks the kernel at its preferred address and needs init_size
        // bytes there.
        let needed = header.pref_address + u64::from(header.init_size);
        if needed > low_ram_end(memory_size) {
            return Err(LinuxBootError::Kernel {
                path: kernel_name,
                reason: format!(
                    "it needs {} MiB of guest memory to decompress; give the VM more",
                    needed.div_ceil(1 << 20)
                ),
            });
        }
    }
    let format = match (is_elf, loaded.pvh_boot_cap) {
        (false, _) => KernelFormat::BzImage,
        (true, PvhBootCapability::PvhEntryPresent(_)) => KernelFormat::ElfPvh,
        (true, _) => KernelFormat::Elf64,
    };

    let cmdline = command_line(extra)?;
    load_cmdline(mem, GuestAddress(layout::CMDLINE), &cmdline)
        .map_err(|e| LinuxBootError::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| LinuxBootError::Cmdline(e.to_string()))?
        .as_bytes()
        .len() as u32;

    let initramfs = match initramfs {
        None => None,
        Some(path) => Some(load_initramfs(mem, memory_size, &loaded, path)?),
    };
    let map = memory_map(memory_size);
    let entry = match (format, loaded.pvh_boot_cap) {
        (KernelFormat::ElfPvh, PvhBootCapability::PvhEntryPresent(rip)) => {
            write_pvh_start_info(mem, &map, initramfs, rsdp)?;
            LinuxEntry::Pvh {
                rip: rip.raw_value(),
                start_info: layout::PVH_START_INFO,
            }
        }
        _ => {
            write_zero_page(mem, &loaded, &map, cmdline_len, initramfs, rsdp).map_err(|e| {
                LinuxBootError::Kernel {
                    path: kernel_name.clone(),
                    reason: e,
                }
            })?;
            let offset = match format {
                KernelFormat::BzImage => BZIMAGE_64BIT_ENTRY_OFFSET,
                KernelFormat::ElfPvh | KernelFormat::Elf64 => 0,
            };
            LinuxEntry::Long64 {
                rip: loaded.kernel_load.raw_value() + offset,
                boot_params: layout::ZERO_PAGE,
            }
        }
    };
    Ok(LoadedKernel {
        format,
        entry,
        initramfs,
    })
}

/// The end of the RAM below the MMIO window.
fn low_ram_end(memory_size: u64) -> u64 {
    ram_ranges(memory_size)
        .first()
        .map(|&(start, len)| start + len)
        .unwrap_or(0)
}

/// Puts the initramfs as high as the kernel allows, page aligned: above the kernel, below
/// its `initrd_addr_max` and the end of low RAM.
fn load_initramfs<M: GuestMemoryBackend>(
    mem: &M,
    memory_size: u64,
    kernel: &KernelLoaderResult,
    image: &ImageFile,
) -> Result<(u64, u64), LinuxBootError> {
    let path = &image.path;
    let file_error = |source| LinuxBootError::File {
        what: "initramfs",
        path: path.display().to_string(),
        source,
    };
    let mut file = image.rewound("initramfs")?;
    let size = file.metadata().map_err(file_error)?.len();
    let max_end = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|&m| m != 0)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX)
        + 1;
    let limit = max_end.min(low_ram_end(memory_size));
    let too_large = || LinuxBootError::InitramfsTooLarge {
        path: path.display().to_string(),
        size,
        limit,
    };
    let start = limit.checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if start < kernel.kernel_end {
        return Err(too_large());
    }
    mem.read_exact_volatile_from(GuestAddress(start), &mut file, size as usize)
        .map_err(|e| LinuxBootError::File {
            what: "initramfs",
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((start, size))
}

/// Writes `struct boot_params` for a 64-bit entry (a bzImage's header as loaded, or a fresh
/// one for a vmlinux).
fn write_zero_page<M: GuestMemoryBackend>(
    mem: &M,
    kernel: &KernelLoaderResult,
    map: &[(u64, u64, u32)],
    cmdline_len: u32,
    initramfs: Option<(u64, u64)>,
    rsdp: Option<u64>,
) -> Result<(), String> {
    let mut params = boot_params::default();
    match kernel.setup_header {
        Some(header) => {
            if header.xloadflags & XLF_KERNEL_64 == 0 {
                return Err("this bzImage has no 64-bit entry point (XLF_KERNEL_64)".into());
            }
            params.hdr = header;
        }
        None => {
            params.hdr.boot_flag = BOOT_FLAG;
            params.hdr.header = HDRS_MAGIC;
            params.hdr.kernel_alignment = KERNEL_ALIGNMENT;
        }
    }
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.acpi_rsdp_addr = rsdp.unwrap_or(0);
    params.hdr.cmd_line_ptr = layout::CMDLINE as u32;
    params.hdr.cmdline_size = cmdline_len;
    if let Some((start, size)) = initramfs {
        params.hdr.ramdisk_image = start as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    if map.len() > params.e820_table.len() {
        return Err("too many memory-map entries".into());
    }
    for (slot, &(addr, size, kind)) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: kind,
        };
    }
    params.e820_entries = map.len() as u8;
    let boot = BootParams::new(&params, GuestAddress(layout::ZERO_PAGE));
    LinuxBootConfigurator::write_bootparams(&boot, mem).map_err(|e| e.to_string())
}

/// Writes `struct hvm_start_info` with the memory map and, if there is one, the initramfs as
/// the first module.
fn write_pvh_start_info<M: GuestMemoryBackend>(
    mem: &M,
    map: &[(u64, u64, u32)],
    initramfs: Option<(u64, u64)>,
    rsdp: Option<u64>,
) -> Result<(), LinuxBootError> {
    const START_MAGIC: u32 = 0x336e_c578;
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|&(addr, size, type_)| hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        })
        .collect();
    let mut start_info = hvm_start_info {
        magic: START_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE,
        rsdp_paddr: rsdp.unwrap_or(0),
        memmap_paddr: layout::PVH_MEMMAP,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    if initramfs.is_some() {
        start_info.nr_modules = 1;
        start_info.modlist_paddr = layout::PVH_MODLIST;
    }
    let mut boot = BootParams::new(&start_info, GuestAddress(layout::PVH_START_INFO));
    if let Some((paddr, size)) = initramfs {
        boot.set_modules(
            &[hvm_modlist_entry {
                paddr,
                size,
                ..Default::default()
            }],
            GuestAddress(layout::PVH_MODLIST),
        );
    }
    boot.set_sections(&memmap, GuestAddress(layout::PVH_MEMMAP));
    PvhBootConfigurator::write_bootparams(&boot, mem)
        .map_err(|e| LinuxBootError::BootParams(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_map_reserves_the_bios_area_and_skips_the_mmio_window() {
        assert_eq!(
            memory_map(64 << 20),
            vec![
                (0, 0x9_fc00, E820_RAM),
                (0x9_fc00, 0x6_0400, E820_RESERVED),
                (0x10_0000, (64 << 20) - 0x10_0000, E820_RAM),
            ]
        );
        let large = memory_map(4 << 30);
        assert_eq!(large.len(), 4);
        assert_eq!(large[3], (1 << 32, (4 << 30) - 0xc000_0000, E820_RAM));
    }

    #[test]
    fn the_command_line_starts_with_the_console_and_keeps_the_vms_arguments_last() {
        let cmdline = command_line("  root=/dev/vda quiet ").unwrap();
        let text = cmdline.as_cstring().unwrap().into_string().unwrap();
        assert!(text.starts_with("console=ttyS0 "), "{text}");
        assert!(text.ends_with(" root=/dev/vda quiet"), "{text}");
        assert!(command_line(&"x".repeat(CMDLINE_MAX)).is_err());
    }

    #[test]
    fn a_file_that_is_no_kernel_is_refused_with_its_name() {
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-kernel");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let kernel = ImageFile::open("kernel", &path).unwrap();
        let image = LinuxImage {
            kernel: &kernel,
            initramfs: None,
            cmdline: "",
            rsdp: None,
        };
        let e = load(&mem, 32 << 20, &image).unwrap_err();
        assert!(
            e.to_string().contains("not-a-kernel"),
            "names the file: {e}"
        );
        let e = ImageFile::open("kernel", &dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("kernel "), "{e}");
    }
}
