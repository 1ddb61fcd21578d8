//! Guest memory: vm-memory regions over a memfd (or, after a restore, a private mapping of the
//! snapshot's memory file), and writing it out sparsely.

use crate::arch::layout::ram_ranges;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion,
    GuestRegionMmap, MemoryRegionAddress,
};

/// Guest memory with a bitmap of the pages the VMM itself wrote.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<AtomicBitmap>;

const PAGE: usize = 4096;
/// How much guest memory one volatile copy reads.
const COPY_CHUNK: usize = 1 << 20;

/// What backs guest memory.
#[derive(Clone)]
pub enum Backing {
    /// A memfd mapped shared: the file is the memory.
    Memfd(Arc<File>),
    /// A snapshot's memory file mapped private: pages the guest writes are copied on write,
    /// pages it never touches are read from the file on demand.
    Snapshot(Arc<File>),
}

impl Backing {
    fn file(&self) -> &File {
        match self {
            Backing::Memfd(f) | Backing::Snapshot(f) => f,
        }
    }
}

/// Guest memory and what backs it.
pub struct Memory {
    /// The regions, as vm-memory sees them.
    pub guest: GuestMemoryMmap,
    /// The file behind every region, regions packed one after another.
    pub backing: Backing,
}

fn memfd(name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn map(file: &Arc<File>, size: u64, flags: i32) -> io::Result<GuestMemoryMmap> {
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for (guest, len) in ram_ranges(size) {
        let len_usize = usize::try_from(len).map_err(io::Error::other)?;
        let mapping = MmapRegionBuilder::new_with_bitmap(
            len_usize,
            AtomicBitmap::new(
                len_usize,
                std::num::NonZeroUsize::new(PAGE).expect("page size"),
            ),
        )
        .with_file_offset(FileOffset::from_arc(file.clone(), offset))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(flags | libc::MAP_NORESERVE)
        .build()
        .map_err(|e| io::Error::other(format!("mapping guest memory: {e}")))?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(guest))
            .ok_or_else(|| io::Error::other("guest memory region wraps the address space"))?;
        regions.push(region);
        offset += len;
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| io::Error::other(e.to_string()))
}

impl Memory {
    /// Fresh zeroed memory of `size` bytes in a memfd.
    pub fn anonymous(size: u64) -> io::Result<Memory> {
        let file = memfd(c"cimvirt-guest-ram")?;
        file.set_len(size)?;
        let file = Arc::new(file);
        Ok(Memory {
            guest: map(&file, size, libc::MAP_SHARED)?,
            backing: Backing::Memfd(file),
        })
    }

    /// Maps a snapshot's memory file copy-on-write: nothing is read until the guest touches it.
    pub fn from_snapshot(path: &Path, size: u64) -> io::Result<Memory> {
        let file = File::open(path)?;
        let on_disk = file.metadata()?.len();
        if on_disk != size {
            return Err(io::Error::other(format!(
                "{} holds {on_disk} bytes; the snapshot says the guest has {size}",
                path.display()
            )));
        }
        let file = Arc::new(file);
        Ok(Memory {
            guest: map(&file, size, libc::MAP_PRIVATE)?,
            backing: Backing::Snapshot(file),
        })
    }

    /// Total bytes of guest RAM.
    pub fn size(&self) -> u64 {
        self.guest.iter().map(|r| r.len()).sum()
    }

    /// Zeroes all of guest RAM (a cold reset), releasing what the memfd held. Every page
    /// counts as written by the VMM.
    pub fn clear(&self) -> io::Result<()> {
        for region in self.guest.iter() {
            vmm_bitmap(region).set_addr_range(0, region.len() as usize);
        }
        match &self.backing {
            Backing::Memfd(file) => {
                // SAFETY: punching a hole in our own memfd; the shared mapping sees zeroes.
                let rc = unsafe {
                    libc::fallocate(
                        file.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        0,
                        self.size() as libc::off_t,
                    )
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            Backing::Snapshot(file) => {
                // Dropping the private copies takes the mapping back to the file's contents;
                // then only the file's data extents need zeroes written over them.
                let zeroes = vec![0u8; 1 << 20];
                let mut file_offset = 0;
                for region in self.guest.iter() {
                    // SAFETY: the range is exactly this region's private mapping; discarding
                    // its pages is what a reset wants, and the vCPUs are stopped.
                    let rc = unsafe {
                        libc::madvise(
                            region.as_ptr().cast(),
                            region.len() as usize,
                            libc::MADV_DONTNEED,
                        )
                    };
                    if rc != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    for (start, end) in data_extents(file, file_offset, region.len())? {
                        let mut offset = start;
                        while offset < end {
                            let len = zeroes.len().min((end - offset) as usize);
                            let addr = region.start_addr().unchecked_add(offset);
                            self.guest
                                .write_slice(&zeroes[..len], addr)
                                .map_err(io::Error::other)?;
                            offset += len as u64;
                        }
                    }
                    file_offset += region.len();
                }
                Ok(())
            }
        }
    }

    /// Guest page frame numbers the VMM itself wrote since the last call (devices, boot
    /// images, resets); clears the record.
    pub fn take_vmm_dirty_pages(&self) -> Vec<u64> {
        let mut pages = Vec::new();
        for region in self.guest.iter() {
            let bitmap = vmm_bitmap(region);
            let first = region.start_addr().0 / PAGE as u64;
            pages.extend(
                (0..region.len() as usize / PAGE)
                    .filter(|&i| bitmap.is_bit_set(i))
                    .map(|i| first + i as u64),
            );
            bitmap.reset_addr_range(0, region.len() as usize);
        }
        pages
    }

    /// Writes guest RAM into the empty file `out` as a sparse file: only the pages that can
    /// hold data are read, and all-zero pages become holes. The vCPUs must be stopped.
    pub fn save_to(&self, out: &File) -> io::Result<u64> {
        let mut file_offset = 0u64;
        let mut written = 0u64;
        for region in self.guest.iter() {
            let len = region.len();
            let host = region.as_ptr();
            for (start, end) in self.candidate_ranges(file_offset, len, host)? {
                // SAFETY: `host .. host + len` is this region's live mapping; the vCPUs are
                // stopped (this function's contract) and no device writes guest memory, so
                // nothing changes it while the slice exists.
                let bytes = unsafe {
                    std::slice::from_raw_parts(host.add(start as usize), (end - start) as usize)
                };
                for (i, page) in bytes.chunks(PAGE).enumerate() {
                    if page.iter().any(|&b| b != 0) {
                        out.write_all_at(page, file_offset + start + (i * PAGE) as u64)?;
                        written += page.len() as u64;
                    }
                }
            }
            file_offset += len;
        }
        out.set_len(file_offset)?;
        out.sync_all()?;
        Ok(written)
    }

    /// Copies guest RAM into the sparse file `out`, in the layout [`Memory::save_to`]
    /// writes, while the guest may be running. Without `pages`, every page that can hold
    /// data (all-zero ones left as holes) goes into `out`, which must be empty; with `pages`
    /// (guest frame numbers), those pages are written over the file's, whatever they hold,
    /// so that the file follows the guest from one copy to the next. Reads are vm-memory's
    /// volatile copies, since vCPUs may write the pages meanwhile; what they change then is
    /// in the next dirty log. Returns the file ranges written, merged.
    pub fn copy_into(&self, out: &File, pages: Option<&[u64]>) -> io::Result<Vec<(u64, u64)>> {
        let mut buffer = vec![0u8; COPY_CHUNK];
        let mut written = Vec::new();
        let mut file_offset = 0u64;
        for region in self.guest.iter() {
            let len = region.len();
            let ranges = match pages {
                Some(pages) => {
                    let start = region.start_addr().0;
                    merge(
                        pages
                            .iter()
                            .map(|pfn| pfn * PAGE as u64)
                            .filter(|&gpa| gpa >= start && gpa < start + len)
                            .map(|gpa| (gpa - start, gpa - start + PAGE as u64))
                            .collect(),
                    )
                }
                None => self.candidate_ranges(file_offset, len, region.as_ptr())?,
            };
            for (start, end) in ranges {
                let mut at = start;
                while at < end {
                    let n = (end - at).min(COPY_CHUNK as u64) as usize;
                    let slice = region
                        .get_slice(MemoryRegionAddress(at), n)
                        .map_err(io::Error::other)?;
                    slice.copy_to(&mut buffer[..n]);
                    for (i, page) in buffer[..n].chunks(PAGE).enumerate() {
                        if pages.is_some() || page.iter().any(|&b| b != 0) {
                            let offset = file_offset + at + (i * PAGE) as u64;
                            out.write_all_at(page, offset)?;
                            written.push((offset, offset + page.len() as u64));
                        }
                    }
                    at += n as u64;
                }
            }
            file_offset += len;
        }
        if out.metadata()?.len() != file_offset {
            out.set_len(file_offset)?;
        }
        Ok(merge(written))
    }

    /// The page ranges (offsets within the region) of the region at `file_offset` that may
    /// hold data: the backing file's data extents, plus, for a private mapping, the pages
    /// resident in it (those the guest wrote are among them).
    fn candidate_ranges(
        &self,
        file_offset: u64,
        len: u64,
        host: *mut u8,
    ) -> io::Result<Vec<(u64, u64)>> {
        let mut ranges = data_extents(self.backing.file(), file_offset, len)?;
        if let Backing::Snapshot(_) = self.backing {
            ranges.extend(resident_ranges(host, len)?);
            ranges = merge(ranges);
        }
        Ok(ranges)
    }
}

/// Sorts ranges and merges those that overlap or touch.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The record of pages the VMM wrote in `region` (the region's own bitmap; the one
/// `GuestMemoryRegion::bitmap` returns is a view with no page queries).
fn vmm_bitmap(region: &GuestRegionMmap<AtomicBitmap>) -> &AtomicBitmap {
    std::ops::Deref::deref(region).bitmap()
}

/// The data (non-hole) ranges of `file` within `offset .. offset + len`, relative to `offset`
/// (SEEK_DATA and SEEK_HOLE): what a copy of a sparse file must carry.
pub fn data_extents(file: &File, offset: u64, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let end = offset + len;
    let mut ranges = Vec::new();
    let mut pos = offset;
    while pos < end {
        // SAFETY: lseek on our own descriptor; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after `pos`
            }
            return Err(err);
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let hole = (hole as u64).min(end);
        ranges.push((data - offset, hole - offset));
        pos = hole;
    }
    Ok(ranges)
}

/// The ranges of resident pages of the mapping at `host .. host + len`.
fn resident_ranges(host: *mut u8, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let pages = len as usize / PAGE;
    let mut residency = vec![0u8; pages];
    // SAFETY: `host` is the page-aligned start of a live mapping of `len` bytes and
    // `residency` has one byte per page, as mincore requires.
    let rc = unsafe { libc::mincore(host.cast(), len as usize, residency.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (page, _) in residency.iter().enumerate().filter(|(_, r)| *r & 1 == 1) {
        let (start, end) = ((page * PAGE) as u64, ((page + 1) * PAGE) as u64);
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => ranges.push((start, end)),
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_memory_is_sparse_and_restores_copy_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let mem = Memory::anonymous(16 << 20).unwrap();
        mem.guest
            .write_obj(0x1234_5678u64, GuestAddress(0x10_0000))
            .unwrap();
        mem.guest.write_obj(0u64, GuestAddress(0x20_0000)).unwrap(); // a zero page: a hole
        let path = dir.path().join("memory");
        assert_eq!(mem.save_to(&File::create(&path).unwrap()).unwrap(), 4096);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 << 20);

        let restored = Memory::from_snapshot(&path, 16 << 20).unwrap();
        assert_eq!(
            restored
                .guest
                .read_obj::<u64>(GuestAddress(0x10_0000))
                .unwrap(),
            0x1234_5678
        );
        restored
            .guest
            .write_obj(7u64, GuestAddress(0x30_0000))
            .unwrap();
        let again = dir.path().join("memory2");
        assert_eq!(
            restored.save_to(&File::create(&again).unwrap()).unwrap(),
            8192,
            "the file's page and the new one"
        );
        // The private mapping never wrote through to the file it came from.
        let first = Memory::from_snapshot(&path, 16 << 20).unwrap();
        assert_eq!(
            first
                .guest
                .read_obj::<u64>(GuestAddress(0x30_0000))
                .unwrap(),
            0
        );
    }

    #[test]
    fn copies_while_running_take_every_data_page_then_follow_the_pages_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mem = Memory::anonymous(16 << 20).unwrap();
        mem.guest
            .write_obj(0xabcdu64, GuestAddress(0x10_0000))
            .unwrap();
        mem.guest.write_obj(0u64, GuestAddress(0x20_0000)).unwrap();
        let path = dir.path().join("memory");
        assert_eq!(
            mem.copy_into(
                &File::options()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .unwrap(),
                None
            )
            .unwrap(),
            [(0x10_0000, 0x10_1000)],
            "the zero page stays a hole"
        );
        let file = File::open(&path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 16 << 20);
        assert_eq!(
            data_extents(&file, 0, 16 << 20).unwrap(),
            [(0x10_0000, 0x10_1000)]
        );

        // Asked-for pages are written over the copy even when they hold zeroes: a page the
        // guest cleared must reach the copy as zeroes.
        mem.guest.write_obj(0u64, GuestAddress(0x10_0000)).unwrap();
        mem.guest.write_obj(7u64, GuestAddress(0x20_1000)).unwrap();
        let pages = [0x10_0000 / 4096, 0x20_1000 / 4096, 0x20_2000 / 4096];
        assert_eq!(
            mem.copy_into(
                &File::options().write(true).open(&path).unwrap(),
                Some(&pages)
            )
            .unwrap(),
            [(0x10_0000, 0x10_1000), (0x20_1000, 0x20_3000)]
        );
        let copy = Memory::from_snapshot(&path, 16 << 20).unwrap();
        assert_eq!(
            copy.guest.read_obj::<u64>(GuestAddress(0x10_0000)).unwrap(),
            0
        );
        assert_eq!(
            copy.guest.read_obj::<u64>(GuestAddress(0x20_1000)).unwrap(),
            7
        );
    }

    #[test]
    fn overlapping_ranges_merge() {
        assert_eq!(
            merge(vec![(8, 12), (0, 4), (2, 6), (6, 7)]),
            vec![(0, 7), (8, 12)]
        );
    }

    #[test]
    fn a_memory_file_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let err = Memory::from_snapshot(&path, 8192).err().unwrap();
        assert!(err.to_string().contains("holds 4096 bytes"), "{err}");
    }

    #[test]
    fn vmm_writes_are_recorded_per_page() {
        let mem = Memory::anonymous(8 << 20).unwrap();
        mem.guest.write_obj(1u64, GuestAddress(0x3008)).unwrap();
        mem.guest
            .write_slice(&[1; 4097], GuestAddress(0x5000))
            .unwrap();
        assert_eq!(mem.take_vmm_dirty_pages(), [3, 5, 6]);
        assert!(mem.take_vmm_dirty_pages().is_empty());
        mem.clear().unwrap();
        assert_eq!(mem.take_vmm_dirty_pages().len(), 2048);
    }

    #[test]
    fn clearing_zeroes_everything() {
        let mem = Memory::anonymous(8 << 20).unwrap();
        mem.guest.write_obj(9u64, GuestAddress(0x1000)).unwrap();
        mem.clear().unwrap();
        assert_eq!(mem.guest.read_obj::<u64>(GuestAddress(0x1000)).unwrap(), 0);
    }

    #[test]
    fn clearing_restored_memory_zeroes_the_file_pages_and_the_copies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let mem = Memory::anonymous(8 << 20).unwrap();
        mem.guest.write_obj(5u64, GuestAddress(0x2000)).unwrap();
        mem.save_to(&File::create(&path).unwrap()).unwrap();
        let restored = Memory::from_snapshot(&path, 8 << 20).unwrap();
        restored
            .guest
            .write_obj(6u64, GuestAddress(0x7000))
            .unwrap();
        restored.clear().unwrap();
        assert_eq!(
            restored
                .guest
                .read_obj::<u64>(GuestAddress(0x2000))
                .unwrap(),
            0
        );
        assert_eq!(
            restored
                .guest
                .read_obj::<u64>(GuestAddress(0x7000))
                .unwrap(),
            0
        );
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk[0x2000], 5, "the snapshot itself is untouched");
    }
}
