//! Carrying an import out: the package's manifest checked, then each planned disk
//! converted into a raw volume of the storage pool (or created empty). A failure removes
//! every volume the import made, so nothing is left half written.

use std::path::Path;

use hypervisor_shim::image::{self, ImageSource};
use hypervisor_shim::storage::{StoragePool, Volume, SECTOR};

use super::descriptor::{self, Envelope};
use super::manifest::Entry;
use super::package::{Location, Package};
use super::plan::{self, DiskSource, ImportOptions, SystemPlan};
use super::{io, OvfError};

/// A package read and planned: what an import will do, before it does any of it.
#[derive(Debug)]
pub struct Prepared {
    /// The package.
    pub package: Package,
    /// Its descriptor.
    pub envelope: Envelope,
    /// One plan per virtual system, in document order.
    pub plans: Vec<SystemPlan>,
}

/// A disk an import made.
#[derive(Clone, Debug)]
pub struct ImportedDisk {
    /// The new volume.
    pub volume: Volume,
    /// Whether the guest only reads it (a CD/DVD image).
    pub read_only: bool,
}

/// Reads and plans the package at `path`. `rename` names the VM of a one-system package.
pub fn prepare(
    path: &Path,
    rename: Option<&str>,
    options: &ImportOptions,
) -> Result<Prepared, OvfError> {
    let package = Package::open(path)?;
    let envelope = descriptor::parse(&package.descriptor)?;
    if rename.is_some() && envelope.systems.len() != 1 {
        return Err(OvfError::Invalid(format!(
            "the package holds {} virtual systems: a new name is given only to a package of one",
            envelope.systems.len()
        )));
    }
    if let Some(section) = envelope.foreign_sections.iter().find(|s| s.required) {
        if !options.lax {
            return Err(OvfError::Unsupported(format!(
                "section {} is required and not understood by this host",
                section.name
            )));
        }
    }
    let plans = envelope
        .systems
        .iter()
        .map(|system| plan::plan(&envelope, system, rename, options))
        .collect::<Result<Vec<_>, _>>()?;
    for plan in &plans {
        for disk in &plan.disks {
            if let DiskSource::File { file_id, .. } = &disk.source {
                let file = envelope
                    .file(file_id)
                    .ok_or_else(|| OvfError::Invalid(format!("no File {file_id}")))?;
                if file.chunked {
                    return Err(OvfError::Unsupported(format!(
                        "File {}: chunked files (ovf:chunkSize) are not read",
                        file.href
                    )));
                }
                package.locate(&file.href)?;
            }
        }
    }
    Ok(Prepared {
        package,
        envelope,
        plans,
    })
}

/// A volume name for disk `index` of VM `vm`: the name's letters and digits, and a number
/// that makes it new in `pool`.
fn volume_name(pool: &StoragePool, vm: &str, index: usize) -> String {
    let stem: String = vm
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let stem = stem.trim_start_matches(['_', '-']);
    let stem = if stem.is_empty() { "vm" } else { stem };
    (1..)
        .map(|n| match n {
            1 => format!("{stem}-disk{index}.img"),
            n => format!("{stem}-disk{index}-{n}.img"),
        })
        .find(|name| pool.path_of(name).is_ok_and(|p| !p.exists()))
        .expect("some name is free")
}

/// Sizes a converted raw image to the capacity the package gives it: grown when smaller;
/// cut when larger only by what a format's geometry rounds up (a VHD's CHS size) and only
/// if that tail holds nothing but zeros.
fn fit_to_capacity(path: &Path, capacity: u64) -> Result<(), OvfError> {
    const MAX_ROUNDING: u64 = 64 << 20;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(format!("opening {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(io(format!("{}", path.display())))?
        .len();
    let target = if capacity == 0 { len } else { capacity };
    let target = target.div_ceil(SECTOR) * SECTOR;
    if target > len {
        return file
            .set_len(target)
            .map_err(io(format!("sizing {}", path.display())));
    }
    if target < len && len - target <= MAX_ROUNDING {
        use std::io::{Read, Seek, SeekFrom};
        let mut tail = Vec::new();
        let mut reader = &file;
        reader
            .seek(SeekFrom::Start(target))
            .and_then(|_| reader.read_to_end(&mut tail))
            .map_err(io(format!("reading {}", path.display())))?;
        if tail.iter().all(|b| *b == 0) {
            file.set_len(target)
                .map_err(io(format!("sizing {}", path.display())))?;
        }
    }
    Ok(())
}

impl Prepared {
    /// The bytes an import reads: each file the manifest lists, and each disk's file.
    fn work_bytes(&self, manifest: &[Entry]) -> Result<u64, OvfError> {
        let mut total = 0;
        for entry in manifest {
            total += self.entry_size(&entry.file);
        }
        for plan in &self.plans {
            for disk in &plan.disks {
                if let DiskSource::File { file_id, .. } = &disk.source {
                    total += self.location(file_id)?.size()?;
                }
            }
        }
        Ok(total.max(1))
    }

    fn entry_size(&self, file: &str) -> u64 {
        if file == self.package.descriptor_name {
            self.package.descriptor.len() as u64
        } else {
            self.package
                .locate(file)
                .and_then(|l| l.size())
                .unwrap_or(0)
        }
    }

    fn location(&self, file_id: &str) -> Result<Location, OvfError> {
        let file = self
            .envelope
            .file(file_id)
            .ok_or_else(|| OvfError::Invalid(format!("no File {file_id}")))?;
        self.package.locate(&file.href)
    }

    /// Checks the manifest and makes every planned disk in `pool`, reporting progress in
    /// percent (0-99). Returns each plan's disks, in plan order; a failure deletes every
    /// volume made so far. `report` collects what the job should say (manifest entries for
    /// absent files).
    pub fn run(
        &self,
        pool: &StoragePool,
        progress: &mut dyn FnMut(u16),
        report: &mut Vec<String>,
    ) -> Result<Vec<Vec<ImportedDisk>>, OvfError> {
        let manifest = self.package.manifest_entries()?;
        let total = self.work_bytes(&manifest)?;
        let mut done = 0u64;
        // `tell` takes the bytes done so far, of all the import's work.
        let mut tell = |bytes: u64| progress(((bytes.min(total) * 99) / total) as u16);
        for entry in manifest {
            let known = entry.file == self.package.descriptor_name
                || self.package.locate(&entry.file).is_ok();
            if !known {
                report.push(format!(
                    "manifest lists {}, which the package lacks",
                    entry.file
                ));
                continue;
            }
            let start = done;
            self.package.check(&entry, &mut |read| tell(start + read))?;
            done += self.entry_size(&entry.file);
        }
        let mut made: Vec<Volume> = Vec::new();
        let result = self.make_disks(pool, &mut made, &mut tell, done);
        if result.is_err() {
            for volume in &made {
                let _ = pool.delete_volume(&volume.name);
            }
        }
        result
    }

    fn make_disks(
        &self,
        pool: &StoragePool,
        made: &mut Vec<Volume>,
        tell: &mut dyn FnMut(u64),
        mut done: u64,
    ) -> Result<Vec<Vec<ImportedDisk>>, OvfError> {
        let mut systems = Vec::with_capacity(self.plans.len());
        for plan in &self.plans {
            let mut disks = Vec::with_capacity(plan.disks.len());
            for (index, disk) in plan.disks.iter().enumerate() {
                let name = volume_name(pool, &plan.name, index + 1);
                let volume = match &disk.source {
                    DiskSource::Blank => pool
                        .create_volume(&name, disk.capacity.div_ceil(SECTOR) * SECTOR)
                        .map_err(|e| OvfError::Convert(e.to_string()))?,
                    DiskSource::File { file_id, format } => {
                        let location = self.location(file_id)?;
                        let size = location.size()?;
                        let gzip = self.envelope.file(file_id).is_some_and(|f| f.gzip);
                        let start = done;
                        let volume = self.convert(
                            pool,
                            &name,
                            &location,
                            gzip,
                            format.qemu_name(),
                            &disk.item,
                            &mut |fraction| tell(start + (fraction * size as f64) as u64),
                        )?;
                        made.push(volume.clone());
                        fit_to_capacity(&volume.path, disk.capacity)?;
                        done += size;
                        pool.volume(&volume.name)
                            .map_err(|e| OvfError::Convert(e.to_string()))?
                    }
                };
                if matches!(disk.source, DiskSource::Blank) {
                    made.push(volume.clone());
                }
                disks.push(ImportedDisk {
                    volume,
                    read_only: disk.read_only,
                });
            }
            systems.push(disks);
        }
        Ok(systems)
    }

    /// Converts one file of the package into raw volume `name`.
    #[allow(clippy::too_many_arguments)]
    fn convert(
        &self,
        pool: &StoragePool,
        name: &str,
        location: &Location,
        gzip: bool,
        format: Option<&str>,
        item: &str,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Volume, OvfError> {
        // A gzip-compressed file is inflated beside the pool's volumes first (qemu-img
        // reads no gzip), and removed after.
        let inflated = match gzip {
            true => Some(inflate(pool, name, location)?),
            false => None,
        };
        let source = match (&inflated, location) {
            (Some(file), _) => ImageSource {
                path: file.path().to_path_buf(),
                range: None,
                format: format.map(str::to_owned),
            },
            (None, Location::File(path)) => ImageSource {
                path: path.clone(),
                range: None,
                format: format.map(str::to_owned),
            },
            (
                None,
                Location::Member {
                    archive,
                    offset,
                    size,
                },
            ) => ImageSource {
                path: archive.clone(),
                range: Some((*offset, *size)),
                format: format.map(str::to_owned),
            },
        };
        let info =
            image::inspect(&source).map_err(|e| OvfError::Convert(format!("Item {item}: {e}")))?;
        if let Some(expected) = format {
            // A raw/ISO file is whatever bytes it holds; other formats must be what the
            // descriptor says.
            if expected != "raw" && info.format != expected {
                return Err(OvfError::Convert(format!(
                    "Item {item}: the descriptor says {expected}, the file is {}",
                    info.format
                )));
            }
        }
        pool.import_with(name, &mut |partial| {
            image::convert(&source, &info.format, partial, "raw", None, progress)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| OvfError::Convert(format!("Item {item}: {e}")))
    }
}

/// Inflates a gzip-compressed package file into a temporary file in the pool's directory.
fn inflate(
    pool: &StoragePool,
    name: &str,
    location: &Location,
) -> Result<tempfile::NamedTempFile, OvfError> {
    let mut out = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".inflating")
        .tempfile_in(pool.dir())
        .map_err(io("creating a file to inflate into"))?;
    let mut decoder = flate2::read::GzDecoder::new(location.open()?);
    std::io::copy(&mut decoder, out.as_file_mut())
        .map_err(|e| OvfError::Convert(format!("inflating {name}: {e}")))?;
    Ok(out)
}
