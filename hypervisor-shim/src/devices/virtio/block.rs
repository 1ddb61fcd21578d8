//! virtio-blk (virtio 1.2, section 5.2) on a raw image file: read, write, flush, discard and
//! write-zeroes (where the file system punches holes), read-only disks, and the device ID.
//! Requests run on the device's I/O thread through the page cache, in bounded chunks.

use super::io_thread::{IoThread, QueueHandler};
use super::{ActiveQueues, Interrupt, VirtioDevice};
use crate::memory::{GuestMemoryMmap, Memory};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{DescriptorChain, Queue, QueueT, Reader, Writer};
use vmm_sys_util::fallocate::{fallocate, FallocateMode};

/// The sector size of the protocol (and of our disks).
pub const SECTOR_SIZE: u64 = 512;
/// The length of a device ID (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;
/// The one request queue's size.
const QUEUE_SIZE: u16 = 256;
/// Data moves between the file and guest memory through a buffer of this size, so that no
/// request, however large it claims to be, makes the VMM allocate more.
const CHUNK: usize = 1 << 20;
/// Segments one discard or write-zeroes request may carry.
const MAX_DISCARD_SEGMENTS: u32 = 32;
/// The largest range of one discard or write-zeroes segment (2 GiB).
const MAX_DISCARD_SECTORS: u32 = 1 << 22;

/// A disk of a VM's definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The raw image file (or block device).
    pub path: PathBuf,
    /// The guest may read but not write it.
    #[serde(default)]
    pub read_only: bool,
    /// The device ID the guest reads (up to 20 ASCII characters; Linux shows it as the
    /// disk's serial). Defaults to the image's file name.
    #[serde(default)]
    pub id: Option<String>,
}

impl DiskConfig {
    /// The device ID, padded with NULs (the default: the file name, cut to 20 bytes).
    pub fn id_bytes(&self) -> [u8; ID_BYTES] {
        let name = match &self.id {
            Some(id) => id.clone(),
            None => self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let mut id = [0u8; ID_BYTES];
        for (slot, byte) in id.iter_mut().zip(name.bytes()) {
            *slot = byte;
        }
        id
    }

    /// Checks what can be checked without opening the image.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.is_absolute() {
            return Err(format!(
                "disk {}: the image path must be absolute",
                self.path.display()
            ));
        }
        if let Some(id) = &self.id {
            if id.len() > ID_BYTES || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Err(format!(
                    "disk {}: the ID {id:?} must be at most {ID_BYTES} printable ASCII characters",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }
}

/// An open image: its file, size and what the file system lets us do with it.
struct DiskImage {
    file: File,
    sectors: u64,
    read_only: bool,
    punches_holes: bool,
}

/// Whether holes can be punched in the image `file` at `path` (`size` bytes), found out
/// without touching it: a punch, even one past the end that changes no data, would update
/// the image's modification time. For a regular file the probe punches an unnamed
/// temporary file (`O_TMPFILE`) in the same directory, which is on the same file system;
/// a block device is probed past its end, where nothing is.
fn punches_holes(path: &Path, file: &File, size: u64) -> bool {
    use std::os::unix::fs::OpenOptionsExt as _;
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    if !regular {
        return fallocate(file, FallocateMode::PunchHole, true, size, 4096).is_ok();
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .is_ok_and(|probe| fallocate(&probe, FallocateMode::PunchHole, true, 0, 4096).is_ok())
}

impl DiskImage {
    fn open(config: &DiskConfig) -> std::io::Result<DiskImage> {
        let path = &config.path;
        let context = |what: &str, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("disk {}: {what}: {e}", path.display()))
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!config.read_only)
            .open(path)
            .map_err(|e| context("opening", e))?;
        // Two VMs writing one image corrupt it: a writer needs the image to itself, readers
        // may share it (the lock goes with the file descriptor, so with the VM process).
        let locked = if config.read_only {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        if let Err(e) = locked {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    format!("disk {}: another VM is using the image", path.display()),
                ),
                std::fs::TryLockError::Error(e) => context("locking", e),
            });
        }
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| context("sizing", e))?;
        let punches_holes = !config.read_only && punches_holes(path, &file, size);
        Ok(DiskImage {
            file,
            sectors: size / SECTOR_SIZE,
            read_only: config.read_only,
            punches_holes,
        })
    }

    /// The byte offset of `sector`, if `bytes` from there stay on the disk.
    fn range(&self, sector: u64, bytes: u64) -> Option<u64> {
        let sectors = bytes.div_ceil(SECTOR_SIZE);
        (sector.checked_add(sectors)? <= self.sectors).then_some(sector * SECTOR_SIZE)
    }
}

/// A virtio-blk device.
pub struct Block {
    image: Arc<DiskImage>,
    id: [u8; ID_BYTES],
    features: u64,
    config_space: Vec<u8>,
    name: String,
    io_thread: Option<IoThread<BlockWorker>>,
}

impl Block {
    /// Opens the image of `config` for a device whose I/O thread is called `name`.
    pub fn new(config: &DiskConfig, name: String) -> std::io::Result<Block> {
        let image = DiskImage::open(config)?;
        let mut features = 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_RING_F_EVENT_IDX;
        if image.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        if image.punches_holes {
            features |= 1 << VIRTIO_BLK_F_DISCARD | 1 << VIRTIO_BLK_F_WRITE_ZEROES;
        }
        let config_space = config_space(image.sectors);
        Ok(Block {
            image: Arc::new(image),
            id: config.id_bytes(),
            features,
            config_space,
            name,
            io_thread: None,
        })
    }
}

/// The configuration space (`struct virtio_blk_config`), laid out by the kernel's own
/// definition.
fn config_space(sectors: u64) -> Vec<u8> {
    use std::mem::{offset_of, size_of};
    let mut space = vec![0u8; size_of::<virtio_blk_config>()];
    let mut put = |offset: usize, bytes: &[u8]| {
        space[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(
        offset_of!(virtio_blk_config, capacity),
        &sectors.to_le_bytes(),
    );
    put(
        offset_of!(virtio_blk_config, seg_max),
        &u32::from(QUEUE_SIZE - 2).to_le_bytes(),
    );
    put(
        offset_of!(virtio_blk_config, blk_size),
        &(SECTOR_SIZE as u32).to_le_bytes(),
    );
    put(
        offset_of!(virtio_blk_config, num_queues),
        &1u16.to_le_bytes(),
    );
    for (field, value) in [
        (
            offset_of!(virtio_blk_config, max_discard_sectors),
            MAX_DISCARD_SECTORS,
        ),
        (
            offset_of!(virtio_blk_config, max_discard_seg),
            MAX_DISCARD_SEGMENTS,
        ),
        (offset_of!(virtio_blk_config, discard_sector_alignment), 8),
        (
            offset_of!(virtio_blk_config, max_write_zeroes_sectors),
            MAX_DISCARD_SECTORS,
        ),
        (
            offset_of!(virtio_blk_config, max_write_zeroes_seg),
            MAX_DISCARD_SEGMENTS,
        ),
    ] {
        put(field, &value.to_le_bytes());
    }
    put(offset_of!(virtio_blk_config, write_zeroes_may_unmap), &[1]);
    space
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(&self.config_space, offset, data);
    }

    fn activate(&mut self, _driver_features: u64, active: ActiveQueues) -> std::io::Result<()> {
        let worker = BlockWorker {
            image: self.image.clone(),
            id: self.id,
            queues: active.queues,
            memory: active.memory,
            interrupt: active.interrupt,
            buffer: vec![0; CHUNK],
        };
        self.io_thread = Some(IoThread::spawn(
            self.name.clone(),
            active.events,
            &[],
            worker,
        )?);
        Ok(())
    }

    fn deactivate(&mut self) -> Option<Vec<Queue>> {
        Some(self.io_thread.take()?.stop()?.queues)
    }
}

/// The I/O thread's side: the queue and what requests need.
struct BlockWorker {
    image: Arc<DiskImage>,
    id: [u8; ID_BYTES],
    queues: Vec<Queue>,
    memory: Arc<Memory>,
    interrupt: Arc<Interrupt>,
    buffer: Vec<u8>,
}

impl QueueHandler for BlockWorker {
    fn process_queue(&mut self, index: usize) {
        let mem = &self.memory.guest;
        let Some(queue) = self.queues.get_mut(index) else {
            return;
        };
        let mut used = 0usize;
        loop {
            if queue.disable_notification(mem).is_err() {
                break;
            }
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let written = execute(&self.image, &self.id, &mut self.buffer, mem, chain);
                if let Err(e) = queue.add_used(mem, head, written) {
                    tracing::warn!("virtio-blk: returning a buffer: {e}");
                }
                used += 1;
            }
            // A request made available while notifications were off is processed now.
            match queue.enable_notification(mem) {
                Ok(true) => continue,
                _ => break,
            }
        }
        if used > 0 && queue.needs_notification(mem).unwrap_or(true) {
            if let Err(e) = self.interrupt.signal_used_queue() {
                tracing::warn!("virtio-blk: raising the interrupt: {e}");
            }
        }
    }
}

/// What a request's header says.
struct RequestHeader {
    kind: u32,
    sector: u64,
}

/// Carries out one request; returns the bytes written into the driver's buffers (data and
/// status), which is what goes into the used ring.
fn execute(
    image: &DiskImage,
    id: &[u8; ID_BYTES],
    buffer: &mut [u8],
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
) -> u32 {
    let (Ok(mut reader), Ok(mut writer)) =
        (Reader::new(mem, chain.clone()), Writer::new(mem, chain))
    else {
        tracing::warn!("virtio-blk: a request's buffers are outside guest memory");
        return 0;
    };
    // The status byte is the last writable byte; without it there is no way to answer.
    let Some(data_len) = writer.available_bytes().checked_sub(1) else {
        tracing::warn!("virtio-blk: a request without a status byte");
        return 0;
    };
    let Ok(mut status_writer) = writer.split_at(data_len) else {
        return 0;
    };
    let mut raw = [0u8; 16];
    let status = match reader.read_exact(&mut raw) {
        Err(_) => VIRTIO_BLK_S_IOERR,
        Ok(()) => {
            let header = RequestHeader {
                kind: u32::from_le_bytes(raw[..4].try_into().unwrap_or_default()),
                sector: u64::from_le_bytes(raw[8..].try_into().unwrap_or_default()),
            };
            match run_request(image, id, buffer, &header, &mut reader, &mut writer) {
                Ok(()) => VIRTIO_BLK_S_OK,
                Err(status) => status,
            }
        }
    };
    let _ = status_writer.write_all(&[status as u8]);
    (writer.bytes_written() + 1) as u32
}

type Status = u32;

fn run_request(
    image: &DiskImage,
    id: &[u8; ID_BYTES],
    buffer: &mut [u8],
    header: &RequestHeader,
    reader: &mut Reader<'_, impl vm_memory::bitmap::BitmapSlice>,
    writer: &mut Writer<'_, impl vm_memory::bitmap::BitmapSlice>,
) -> Result<(), Status> {
    let io_error = |what: &str, e: std::io::Error| {
        tracing::warn!("virtio-blk: {what}: {e}");
        VIRTIO_BLK_S_IOERR
    };
    match header.kind {
        VIRTIO_BLK_T_IN => {
            let len = writer.available_bytes();
            let mut offset = sector_range(image, header.sector, len)?;
            let mut left = len;
            while left > 0 {
                let n = left.min(buffer.len());
                image
                    .file
                    .read_exact_at(&mut buffer[..n], offset)
                    .map_err(|e| io_error("reading the image", e))?;
                writer
                    .write_all(&buffer[..n])
                    .map_err(|e| io_error("writing guest memory", e))?;
                offset += n as u64;
                left -= n;
            }
            Ok(())
        }
        VIRTIO_BLK_T_OUT => {
            if image.read_only {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            let len = reader.available_bytes();
            let mut offset = sector_range(image, header.sector, len)?;
            let mut left = len;
            while left > 0 {
                let n = left.min(buffer.len());
                reader
                    .read_exact(&mut buffer[..n])
                    .map_err(|e| io_error("reading guest memory", e))?;
                image
                    .file
                    .write_all_at(&buffer[..n], offset)
                    .map_err(|e| io_error("writing the image", e))?;
                offset += n as u64;
                left -= n;
            }
            Ok(())
        }
        VIRTIO_BLK_T_FLUSH => {
            if image.read_only {
                return Ok(());
            }
            image
                .file
                .sync_data()
                .map_err(|e| io_error("flushing the image", e))
        }
        VIRTIO_BLK_T_GET_ID => {
            let n = writer.available_bytes().min(ID_BYTES);
            writer
                .write_all(&id[..n])
                .map_err(|e| io_error("writing guest memory", e))
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            if image.read_only || !image.punches_holes {
                return Err(VIRTIO_BLK_S_UNSUPP);
            }
            let segments = reader.available_bytes() / 16;
            if segments == 0 || segments > MAX_DISCARD_SEGMENTS as usize {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            for _ in 0..segments {
                let mut raw = [0u8; 16];
                reader
                    .read_exact(&mut raw)
                    .map_err(|e| io_error("reading guest memory", e))?;
                let sector = u64::from_le_bytes(raw[..8].try_into().unwrap_or_default());
                let sectors = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
                let flags = u32::from_le_bytes(raw[12..].try_into().unwrap_or_default());
                // Discard takes no flags; write-zeroes only "may unmap".
                if sectors > MAX_DISCARD_SECTORS
                    || (header.kind == VIRTIO_BLK_T_DISCARD && flags != 0)
                    || flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0
                {
                    return Err(VIRTIO_BLK_S_UNSUPP);
                }
                let bytes = u64::from(sectors) * SECTOR_SIZE;
                let offset = image.range(sector, bytes).ok_or(VIRTIO_BLK_S_IOERR)?;
                // Both leave zeros behind; punching also gives the space back.
                fallocate(&image.file, FallocateMode::PunchHole, true, offset, bytes)
                    .map_err(|e| io_error("punching a hole", e.into()))?;
            }
            Ok(())
        }
        _ => Err(VIRTIO_BLK_S_UNSUPP),
    }
}

/// The byte offset of a data request's first sector: it must move whole sectors and stay
/// on the disk.
fn sector_range(image: &DiskImage, sector: u64, len: usize) -> Result<u64, Status> {
    if !(len as u64).is_multiple_of(SECTOR_SIZE) {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    image.range(sector, len as u64).ok_or(VIRTIO_BLK_S_IOERR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const HEADER: u64 = 0x1_0000;
    const DATA: u64 = 0x10_0000;
    const STATUS: u64 = 0x8_0000;

    struct Rig {
        _dir: tempfile::TempDir,
        path: PathBuf,
        mem: GuestMemoryMmap,
    }

    impl Rig {
        /// A 4 MiB image whose sector `s` is filled with the byte `s`.
        fn new() -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("disk.img");
            let bytes: Vec<u8> = (0..8192u32)
                .flat_map(|s| [s as u8; SECTOR_SIZE as usize])
                .collect();
            std::fs::write(&path, bytes).unwrap();
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
            Rig {
                _dir: dir,
                path,
                mem,
            }
        }

        fn image(&self, read_only: bool) -> DiskImage {
            DiskImage::open(&DiskConfig {
                path: self.path.clone(),
                read_only,
                id: Some("serial-1".into()),
            })
            .unwrap()
        }

        /// Runs one request of `kind` at `sector` with a data buffer of `len` bytes (written
        /// by the device when `device_writes`); returns the used length and the status.
        fn run(
            &self,
            image: &DiskImage,
            kind: u32,
            sector: u64,
            len: u32,
            device_writes: bool,
        ) -> (u32, u8) {
            let mut header = [0u8; 16];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            header[8..].copy_from_slice(&sector.to_le_bytes());
            self.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
            self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
            let write = VRING_DESC_F_WRITE as u16;
            let mut descs = vec![RawDescriptor::from(SplitDescriptor::new(HEADER, 16, 0, 0))];
            if len > 0 {
                let flags = if device_writes { write } else { 0 };
                descs.push(RawDescriptor::from(SplitDescriptor::new(
                    DATA, len, flags, 0,
                )));
            }
            descs.push(RawDescriptor::from(SplitDescriptor::new(
                STATUS, 1, write, 0,
            )));
            let queue = MockSplitQueue::new(&self.mem, 16);
            let chain = queue.build_desc_chain(&descs).unwrap();
            let mut buffer = vec![0u8; CHUNK];
            let used = execute(
                image,
                b"serial-1\0\0\0\0\0\0\0\0\0\0\0\0",
                &mut buffer,
                &self.mem,
                chain,
            );
            (used, self.mem.read_obj(GuestAddress(STATUS)).unwrap())
        }

        fn guest(&self, len: usize) -> Vec<u8> {
            let mut bytes = vec![0u8; len];
            self.mem.read_slice(&mut bytes, GuestAddress(DATA)).unwrap();
            bytes
        }
    }

    const OK: u8 = VIRTIO_BLK_S_OK as u8;
    const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
    const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

    #[test]
    fn reads_and_writes_larger_than_the_bounce_buffer_move_every_byte() {
        let rig = Rig::new();
        let image = rig.image(false);
        let len = (CHUNK + 3 * SECTOR_SIZE as usize) as u32;
        assert_eq!(
            rig.run(&image, VIRTIO_BLK_T_IN, 10, len, true),
            (len + 1, OK)
        );
        let read = rig.guest(len as usize);
        assert_eq!(read[0], 10);
        assert_eq!(read[len as usize - 1], (10 + len / 512 - 1) as u8);

        rig.mem
            .write_slice(&vec![0xab; len as usize], GuestAddress(DATA))
            .unwrap();
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_OUT, 1, len, false), (1, OK));
        let file = std::fs::read(&rig.path).unwrap();
        assert_eq!(file[511], 0, "sector 0 untouched");
        assert!(file[512..512 + len as usize].iter().all(|&b| b == 0xab));
        assert_eq!(file[512 + len as usize], (1 + len / 512) as u8);
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_FLUSH, 0, 0, false), (1, OK));
    }

    #[test]
    fn requests_past_the_end_or_of_partial_sectors_fail() {
        let rig = Rig::new();
        let image = rig.image(false);
        assert_eq!(image.sectors, 8192);
        let failed = (1, IOERR);
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_IN, 8191, 1024, true).1, IOERR);
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_OUT, 8192, 512, false), failed);
        assert_eq!(
            rig.run(&image, VIRTIO_BLK_T_OUT, u64::MAX, 512, false),
            failed
        );
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_OUT, 0, 100, false), failed);
        assert_eq!(rig.run(&image, 99, 0, 0, false), (1, UNSUPP));
        assert_eq!(std::fs::read(&rig.path).unwrap()[..512], [0u8; 512]);
    }

    #[test]
    fn the_id_fills_what_the_driver_gives() {
        let rig = Rig::new();
        let image = rig.image(false);
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_GET_ID, 0, 20, true), (21, OK));
        assert_eq!(&rig.guest(9), b"serial-1\0");
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_GET_ID, 0, 4, true), (5, OK));
    }

    #[test]
    fn a_read_only_disk_refuses_writes_and_discards() {
        let rig = Rig::new();
        let image = rig.image(true);
        assert!(!image.punches_holes);
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_OUT, 0, 512, false), (1, IOERR));
        assert_eq!(
            rig.run(&image, VIRTIO_BLK_T_DISCARD, 0, 16, false),
            (1, UNSUPP)
        );
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_FLUSH, 0, 0, false), (1, OK));
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_IN, 3, 512, true), (513, OK));
        assert_eq!(rig.guest(1), [3]);
    }

    #[test]
    fn opening_an_image_leaves_it_untouched() {
        let rig = Rig::new();
        let then =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(&rig.path)
            .unwrap()
            .set_modified(then)
            .unwrap();
        let image = rig.image(false);
        assert!(image.punches_holes);
        drop(image);
        let modified = std::fs::metadata(&rig.path).unwrap().modified().unwrap();
        assert_eq!(modified, then, "the probe wrote to the image");
    }

    #[test]
    fn discard_and_write_zeroes_punch_holes() {
        let rig = Rig::new();
        let image = rig.image(false);
        // tmpfs, ext4, XFS and Btrfs all punch holes; the temporary directory is on one.
        assert!(image.punches_holes, "the probe found no hole punching");
        let segment = |sector: u64, sectors: u32, flags: u32| {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&sector.to_le_bytes());
            raw[8..12].copy_from_slice(&sectors.to_le_bytes());
            raw[12..].copy_from_slice(&flags.to_le_bytes());
            rig.mem.write_slice(&raw, GuestAddress(DATA)).unwrap();
        };
        let blocks = || std::fs::metadata(&rig.path).unwrap().blocks();
        let before = blocks();
        segment(0, 2048, 0);
        assert_eq!(rig.run(&image, VIRTIO_BLK_T_DISCARD, 0, 16, false), (1, OK));
        segment(4096, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
        assert_eq!(
            rig.run(&image, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false),
            (1, OK)
        );
        let file = std::fs::read(&rig.path).unwrap();
        assert!(file[..1 << 20].iter().all(|&b| b == 0));
        assert_eq!(file[(1 << 20) + 1], 2048u32 as u8);
        assert!(file[4096 * 512..4104 * 512].iter().all(|&b| b == 0));
        assert_eq!(file.len(), 4 << 20, "the size is kept");
        assert!(blocks() < before, "the space went back to the file system");

        segment(0, 8, 1);
        assert_eq!(
            rig.run(&image, VIRTIO_BLK_T_DISCARD, 0, 16, false),
            (1, UNSUPP)
        );
        segment(8190, 8, 0);
        assert_eq!(
            rig.run(&image, VIRTIO_BLK_T_DISCARD, 0, 16, false),
            (1, IOERR)
        );
    }

    #[test]
    fn a_chain_without_a_status_byte_is_returned_empty() {
        let rig = Rig::new();
        let image = rig.image(false);
        let queue = MockSplitQueue::new(&rig.mem, 16);
        let chain = queue
            .build_desc_chain(&[RawDescriptor::from(SplitDescriptor::new(HEADER, 16, 0, 0))])
            .unwrap();
        let mut buffer = vec![0u8; CHUNK];
        assert_eq!(
            execute(&image, &[0; ID_BYTES], &mut buffer, &rig.mem, chain),
            0
        );
    }

    #[test]
    fn the_configuration_space_carries_the_size_and_limits() {
        let space = config_space(8192);
        assert_eq!(space[..8], 8192u64.to_le_bytes());
        assert_eq!(space[12..16], 254u32.to_le_bytes(), "seg_max");
        assert_eq!(space[20..24], 512u32.to_le_bytes(), "blk_size");
    }

    #[test]
    fn ids_and_paths_are_checked() {
        let disk = |id: &str| DiskConfig {
            path: "/images/a.img".into(),
            read_only: false,
            id: Some(id.into()),
        };
        assert!(disk("serial-1").validate().is_ok());
        assert!(disk("twenty-one-characters").validate().is_err());
        assert!(disk("tab\there").validate().is_err());
        let relative = DiskConfig {
            path: "a.img".into(),
            read_only: false,
            id: None,
        };
        assert!(relative.validate().unwrap_err().contains("absolute"));
        assert_eq!(&relative.id_bytes()[..6], b"a.img\0");
    }
}
