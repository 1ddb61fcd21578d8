//! Exporting a stopped VM as an OVF package: its disks converted (streamOptimized VMDK
//! unless asked otherwise), the descriptor, and a manifest of SHA-256 digests, as loose
//! files or one OVA. Everything is written in a hidden directory beside the result and put
//! in place at the end, so a failed export leaves nothing behind, and nothing existing is
//! overwritten.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hypervisor_shim::image::{self, ImageSource};

use super::manifest::{self, Algorithm};
use super::writer::{self, DiskEntry, DiskFormat, FileEntry, NicEntry, SystemEntry};
use super::{io, OvfError};

/// How to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// The format of the disks.
    pub format: DiskFormat,
    /// One `.ova` instead of loose files.
    pub ova: bool,
}

/// A disk of the VM to export.
#[derive(Clone, Debug)]
pub struct ExportDisk {
    /// Its raw image.
    pub path: PathBuf,
    /// A CD image the guest only reads (copied as it is).
    pub read_only: bool,
}

/// The VM to export.
#[derive(Clone, Debug)]
pub struct ExportSystem {
    /// Its name.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Its disks, in the guest's order.
    pub disks: Vec<ExportDisk>,
    /// Its network ports.
    pub nics: Vec<NicEntry>,
    /// Its description.
    pub description: Option<String>,
}

/// The file names of a package for VM `name`: its letters, digits, `-` and `_`.
pub fn package_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    match stem.trim_start_matches(['_', '-']) {
        "" => "vm".to_owned(),
        s => s.to_owned(),
    }
}

/// Exports `system` into `dir`, reporting progress in percent (0-99). Returns the files
/// written (the `.ova`, or the descriptor first).
pub fn export(
    system: &ExportSystem,
    dir: &Path,
    options: ExportOptions,
    progress: &mut dyn FnMut(u16),
) -> Result<Vec<PathBuf>, OvfError> {
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(OvfError::Invalid(format!(
            "ExportDirectory {} is not an existing directory given by its absolute path",
            dir.display()
        )));
    }
    let stem = package_stem(&system.name);
    let descriptor_name = format!("{stem}.ovf");
    let manifest_name = format!("{stem}.mf");
    let disk_names: Vec<String> = system
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| match d.read_only {
            true => format!("{stem}-cdrom{}.iso", i + 1),
            false => format!("{stem}-disk{}.{}", i + 1, options.format.extension()),
        })
        .collect();
    let results: Vec<String> = if options.ova {
        vec![format!("{stem}.ova")]
    } else {
        [descriptor_name.clone(), manifest_name.clone()]
            .into_iter()
            .chain(disk_names.iter().cloned())
            .collect()
    };
    if let Some(existing) = results.iter().find(|name| dir.join(name).exists()) {
        return Err(OvfError::Invalid(format!(
            "{} exists already: an export overwrites nothing",
            dir.join(existing).display()
        )));
    }
    let work = tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".exporting")
        .tempdir_in(dir)
        .map_err(io(format!("creating a directory in {}", dir.display())))?;
    // Each disk's size as qemu-img reads it (a block device's file length is 0). The
    // conversion is most of the work, the digests the rest.
    let sources: Vec<ImageSource> = system
        .disks
        .iter()
        .map(|d| ImageSource {
            path: d.path.clone(),
            range: None,
            format: Some("raw".into()),
        })
        .collect();
    let sizes: Vec<u64> = sources
        .iter()
        .map(|source| {
            image::inspect(source)
                .map(|info| info.virtual_size)
                .map_err(|e| OvfError::Convert(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let total = (sizes.iter().sum::<u64>() * 2).max(1);
    let mut done = 0u64;
    let mut tell = |bytes: u64| progress(((bytes.min(total) * 99) / total) as u16);
    let mut disks = Vec::with_capacity(system.disks.len());
    for (((disk, source), name), size) in system
        .disks
        .iter()
        .zip(&sources)
        .zip(&disk_names)
        .zip(&sizes)
    {
        let meta = std::fs::metadata(&disk.path).map_err(io(format!("{}", disk.path.display())))?;
        let target = work.path().join(name);
        let format = if disk.read_only {
            DiskFormat::Raw
        } else {
            options.format
        };
        let (qemu_format, qemu_options) = match format {
            DiskFormat::StreamOptimizedVmdk => ("vmdk", Some("subformat=streamOptimized")),
            DiskFormat::Raw => ("raw", None),
            DiskFormat::Qcow2 => ("qcow2", None),
        };
        let start = done;
        image::convert(
            source,
            "raw",
            &target,
            qemu_format,
            qemu_options,
            &mut |fraction| tell(start + (fraction * *size as f64) as u64),
        )
        .map_err(|e| OvfError::Convert(e.to_string()))?;
        done += size;
        let written = std::fs::metadata(&target)
            .map_err(io(format!("{}", target.display())))?
            .len();
        disks.push(DiskEntry {
            file: FileEntry {
                href: name.clone(),
                size: written,
            },
            capacity: *size,
            populated: meta.blocks() * 512,
            format,
            cdrom: disk.read_only,
        });
    }
    let descriptor = writer::descriptor(&SystemEntry {
        name: system.name.clone(),
        vcpus: system.vcpus,
        memory_mib: system.memory_mib,
        disks,
        nics: system.nics.clone(),
        description: system.description.clone(),
    });
    std::fs::write(work.path().join(&descriptor_name), &descriptor)
        .map_err(io("writing the descriptor"))?;
    let mut manifest_text = manifest::line(
        Algorithm::Sha256,
        &descriptor_name,
        &manifest::digest(Algorithm::Sha256, descriptor.as_bytes(), &mut |_| {})
            .map_err(io("digesting the descriptor"))?,
    );
    for (name, size) in disk_names.iter().zip(&sizes) {
        let path = work.path().join(name);
        let file = File::open(&path).map_err(io(format!("{}", path.display())))?;
        let start = done;
        let written = std::fs::metadata(&path).map_or(1, |m| m.len().max(1));
        let digest = manifest::digest(Algorithm::Sha256, file, &mut |read| {
            tell(start + read * size / written)
        })
        .map_err(io(format!("digesting {name}")))?;
        done += size;
        manifest_text.push_str(&manifest::line(Algorithm::Sha256, name, &digest));
    }
    std::fs::write(work.path().join(&manifest_name), &manifest_text)
        .map_err(io("writing the manifest"))?;
    let order: Vec<&String> = [&descriptor_name, &manifest_name]
        .into_iter()
        .chain(&disk_names)
        .collect();
    if options.ova {
        // Descriptor, manifest, then the files in References order (DSP0243).
        let ova = dir.join(&results[0]);
        let partial = work.path().join(&results[0]);
        let file = File::create(&partial).map_err(io(format!("{}", partial.display())))?;
        let mut builder = tar::Builder::new(file);
        builder.mode(tar::HeaderMode::Deterministic);
        // Plain members: OVA readers do not take GNU sparse entries.
        builder.sparse(false);
        for name in &order {
            builder
                .append_path_with_name(work.path().join(name), name)
                .map_err(io(format!("writing {name} into the OVA")))?;
        }
        builder
            .into_inner()
            .and_then(|f| f.sync_all())
            .map_err(io("writing the OVA"))?;
        place(&partial, &ova)?;
        Ok(vec![ova])
    } else {
        let mut written = Vec::with_capacity(order.len());
        for name in order {
            let target = dir.join(name);
            place(&work.path().join(name), &target)?;
            written.push(target);
        }
        Ok(written)
    }
}

/// Moves a finished file into place, never over an existing one.
fn place(from: &Path, to: &Path) -> Result<(), OvfError> {
    std::fs::hard_link(from, to)
        .and_then(|()| std::fs::remove_file(from))
        .map_err(io(format!("placing {}", to.display())))
}
