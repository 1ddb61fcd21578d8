//! A package on the host: a descriptor with its files beside it, or an OVA (a tar whose
//! members are read where they lie: nothing is unpacked). File names come from the
//! descriptor, which comes from elsewhere, so each is checked to stay inside the package.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::manifest::{self, Entry};
use super::{descriptor, io, OvfError};

/// Where a file of the package lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A file of its own.
    File(PathBuf),
    /// A member of an OVA: `size` bytes at `offset` of the archive.
    Member {
        /// The archive.
        archive: PathBuf,
        /// Where the member's bytes start.
        offset: u64,
        /// How many there are.
        size: u64,
    },
}

impl Location {
    /// Its size in bytes.
    pub fn size(&self) -> Result<u64, OvfError> {
        match self {
            Location::File(path) => std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(io(format!("{}", path.display()))),
            Location::Member { size, .. } => Ok(*size),
        }
    }

    /// Its bytes, from the start.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, OvfError> {
        match self {
            Location::File(path) => Ok(Box::new(
                File::open(path).map_err(io(format!("opening {}", path.display())))?,
            )),
            Location::Member {
                archive,
                offset,
                size,
            } => {
                let mut file =
                    File::open(archive).map_err(io(format!("opening {}", archive.display())))?;
                file.seek(SeekFrom::Start(*offset))
                    .map_err(io(format!("reading {}", archive.display())))?;
                Ok(Box::new(file.take(*size)))
            }
        }
    }
}

/// One member of an OVA.
#[derive(Clone, Debug)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

/// An opened package.
#[derive(Debug)]
pub struct Package {
    /// The descriptor's file name (for the manifest).
    pub descriptor_name: String,
    /// The descriptor's bytes.
    pub descriptor: Vec<u8>,
    /// The manifest's text, if the package has one.
    pub manifest: Option<String>,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Directory(PathBuf),
    Archive { path: PathBuf, members: Vec<Member> },
}

/// Refuses a file name that could leave the package: absolute, with `..`, a URL, or empty.
fn check_href(href: &str) -> Result<(), OvfError> {
    let bad = href.is_empty()
        || href.starts_with('/')
        || href.contains("://")
        || href.contains('\\')
        || href.contains('\0')
        || href.split('/').any(|part| part == ".." || part.is_empty());
    if bad {
        return Err(OvfError::Unsupported(format!(
            "File href {href:?}: only files inside the package are read (no absolute paths, \
             '..' or URLs)"
        )));
    }
    Ok(())
}

fn read_limited(location: &Location, limit: u64, what: &str) -> Result<Vec<u8>, OvfError> {
    if location.size()? > limit {
        return Err(OvfError::Invalid(format!(
            "the {what} is larger than {} MiB",
            limit >> 20
        )));
    }
    let mut bytes = Vec::new();
    location
        .open()?
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(io(format!("reading the {what}")))?;
    Ok(bytes)
}

/// Whether `path` is a tar archive (the `ustar` magic at byte 257).
fn is_tar(path: &Path) -> Result<bool, OvfError> {
    let mut head = [0u8; 263];
    let mut file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    match file.read_exact(&mut head) {
        Ok(()) => Ok(&head[257..262] == b"ustar"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

impl Package {
    /// Opens the package at `path`: an `.ova` (any tar), or a descriptor.
    pub fn open(path: &Path) -> Result<Package, OvfError> {
        let meta = std::fs::metadata(path).map_err(io(format!("{}", path.display())))?;
        if !meta.is_file() {
            return Err(OvfError::NotOvf(format!(
                "{} is not a file (a .ovf descriptor or an .ova)",
                path.display()
            )));
        }
        if is_tar(path)? {
            Self::open_archive(path)
        } else {
            Self::open_descriptor(path)
        }
    }

    fn open_descriptor(path: &Path) -> Result<Package, OvfError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let descriptor = read_limited(
            &Location::File(path.to_path_buf()),
            descriptor::MAX_DESCRIPTOR_BYTES,
            "descriptor",
        )?;
        let stem = name.strip_suffix(".ovf").unwrap_or(&name);
        let manifest_path = dir.join(format!("{stem}.mf"));
        let manifest = match manifest_path.is_file() {
            true => Some(read_limited(
                &Location::File(manifest_path),
                descriptor::MAX_DESCRIPTOR_BYTES,
                "manifest",
            )?),
            false => None,
        };
        Ok(Package {
            descriptor_name: name,
            descriptor,
            manifest: manifest.map(|m| String::from_utf8_lossy(&m).into_owned()),
            source: Source::Directory(dir),
        })
    }

    fn open_archive(path: &Path) -> Result<Package, OvfError> {
        let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let mut archive = tar::Archive::new(file);
        let mut members = Vec::new();
        let entries = archive
            .entries()
            .map_err(io(format!("reading {}", path.display())))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("reading {}", path.display())))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(io(format!("reading {}", path.display())))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            members.push(Member {
                name,
                offset: entry.raw_file_position(),
                size: entry.size(),
            });
            if members.len() > 10_000 {
                return Err(OvfError::Invalid(format!(
                    "{} holds more than 10,000 files",
                    path.display()
                )));
            }
        }
        // The descriptor is the first member (DSP0243); a later one is read all the same.
        let descriptor_member = members
            .iter()
            .find(|m| m.name.ends_with(".ovf") && !m.name.contains('/'))
            .cloned()
            .ok_or_else(|| {
                OvfError::NotOvf(format!("{} holds no .ovf descriptor", path.display()))
            })?;
        let location = |m: &Member| Location::Member {
            archive: path.to_path_buf(),
            offset: m.offset,
            size: m.size,
        };
        let descriptor = read_limited(
            &location(&descriptor_member),
            descriptor::MAX_DESCRIPTOR_BYTES,
            "descriptor",
        )?;
        let stem = descriptor_member.name.trim_end_matches(".ovf").to_owned();
        let manifest = match members.iter().find(|m| m.name == format!("{stem}.mf")) {
            Some(m) => Some(read_limited(
                &location(m),
                descriptor::MAX_DESCRIPTOR_BYTES,
                "manifest",
            )?),
            None => None,
        };
        Ok(Package {
            descriptor_name: descriptor_member.name,
            descriptor,
            manifest: manifest.map(|m| String::from_utf8_lossy(&m).into_owned()),
            source: Source::Archive {
                path: path.to_path_buf(),
                members,
            },
        })
    }

    /// Where the file `href` of the References lies.
    pub fn locate(&self, href: &str) -> Result<Location, OvfError> {
        check_href(href)?;
        match &self.source {
            Source::Directory(dir) => {
                let path = dir.join(href);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_file() => Ok(Location::File(path)),
                    Ok(_) => Err(OvfError::Invalid(format!(
                        "{} is not a plain file",
                        path.display()
                    ))),
                    Err(_) => Err(OvfError::Invalid(format!(
                        "the package's file {href} is missing ({})",
                        path.display()
                    ))),
                }
            }
            Source::Archive { path, members } => members
                .iter()
                .find(|m| m.name == href)
                .map(|m| Location::Member {
                    archive: path.clone(),
                    offset: m.offset,
                    size: m.size,
                })
                .ok_or_else(|| {
                    OvfError::Invalid(format!("{} holds no file {href}", path.display()))
                }),
        }
    }

    /// The manifest's entries (none without a manifest).
    pub fn manifest_entries(&self) -> Result<Vec<Entry>, OvfError> {
        self.manifest
            .as_deref()
            .map_or(Ok(Vec::new()), manifest::parse)
    }

    /// Checks one manifest entry: the descriptor's digest, or a file's. `progress` is told
    /// the bytes read so far.
    pub fn check(&self, entry: &Entry, progress: &mut dyn FnMut(u64)) -> Result<(), OvfError> {
        let actual = if entry.file == self.descriptor_name {
            manifest::digest(entry.algorithm, &self.descriptor[..], progress)
        } else {
            manifest::digest(entry.algorithm, self.locate(&entry.file)?.open()?, progress)
        }
        .map_err(io(format!("reading {}", entry.file)))?;
        if actual != entry.digest {
            return Err(OvfError::Digest(format!(
                "{} does not match the manifest: its {} is {actual}, the manifest says {}",
                entry.file,
                entry.algorithm.name(),
                entry.digest
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_stay_inside_the_package() {
        for good in ["disk1.vmdk", "disks/disk1.vmdk", "a b.iso"] {
            check_href(good).unwrap();
        }
        for bad in [
            "/etc/shadow",
            "../x.vmdk",
            "a/../../x",
            "http://example.com/x.vmdk",
            "",
            "a//b",
            "a\\..\\b",
        ] {
            assert!(check_href(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ova_is_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let ova = dir.path().join("p.ova");
        let mut builder = tar::Builder::new(File::create(&ova).unwrap());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        add("p.ovf", b"<Envelope/>");
        add("p.mf", b"SHA1(p.ovf)= 00\n");
        add("disk.vmdk", b"0123456789");
        builder.into_inner().unwrap();
        let package = Package::open(&ova).unwrap();
        assert_eq!(package.descriptor_name, "p.ovf");
        assert_eq!(package.descriptor, b"<Envelope/>");
        assert_eq!(package.manifest_entries().unwrap().len(), 1);
        let disk = package.locate("disk.vmdk").unwrap();
        assert_eq!(disk.size().unwrap(), 10);
        let mut bytes = String::new();
        disk.open().unwrap().read_to_string(&mut bytes).unwrap();
        assert_eq!(bytes, "0123456789");
        assert!(package.locate("other.vmdk").is_err());
        let entry = &package.manifest_entries().unwrap()[0];
        assert!(matches!(
            package.check(entry, &mut |_| {}),
            Err(OvfError::Digest(_))
        ));
    }
}
