//! The package manifest (`NAME.mf`): one `ALGO(file)= hexdigest` line per file. An import
//! checks every digest it lists (SHA-1 for OVF 1.x, SHA-256 for 2.x and for cimvirt's own
//! exports, SHA-512 as some tools write); any mismatch refuses the package.

use std::io::Read;

use sha1::Digest as _;

use super::OvfError;

/// A digest algorithm of a manifest line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `SHA1`.
    Sha1,
    /// `SHA256`.
    Sha256,
    /// `SHA512`.
    Sha512,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// How manifests write it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// One line: a file and its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The file, as the package names it.
    pub file: String,
    /// The digest, lower-case hexadecimal.
    pub digest: String,
}

/// Reads a manifest. Blank lines are passed over; any other line that is not
/// `ALGO(file)= hex` refuses it (a manifest that cannot be read checks nothing).
pub fn parse(text: &str) -> Result<Vec<Entry>, OvfError> {
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let refuse =
            || OvfError::Invalid(format!("manifest line {line:?} is not ALGO(file)= digest"));
        let (algorithm, rest) = line.split_once('(').ok_or_else(refuse)?;
        let (file, digest) = rest.rsplit_once(")=").ok_or_else(refuse)?;
        let algorithm = Algorithm::parse(algorithm.trim()).ok_or_else(|| {
            OvfError::Unsupported(format!("manifest digest algorithm {algorithm:?}"))
        })?;
        let digest = digest.trim().to_ascii_lowercase();
        if digest.is_empty() || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(refuse());
        }
        entries.push(Entry {
            algorithm,
            file: file.trim().to_owned(),
            digest,
        });
    }
    Ok(entries)
}

/// Hex digest of everything `reader` gives, calling `progress` with the bytes read so far.
pub fn digest(
    algorithm: Algorithm,
    mut reader: impl Read,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<String> {
    fn run<D: sha1::Digest>(
        mut hasher: D,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> std::io::Result<String> {
        let mut buffer = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            total += n as u64;
            progress(total);
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
    match algorithm {
        Algorithm::Sha1 => run(sha1::Sha1::new(), &mut reader, progress),
        Algorithm::Sha256 => run(sha2::Sha256::new(), &mut reader, progress),
        Algorithm::Sha512 => run(sha2::Sha512::new(), &mut reader, progress),
    }
}

/// A manifest line, as cimvirt writes them.
pub fn line(algorithm: Algorithm, file: &str, digest: &str) -> String {
    format!("{}({file})= {digest}\n", algorithm.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_tools_write_them() {
        let text = "SHA1(vm.ovf)= 0A1b\r\nSHA256(vm-disk1.vmdk)=ff00\n\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].algorithm, Algorithm::Sha1);
        assert_eq!(entries[0].digest, "0a1b");
        assert_eq!(entries[1].file, "vm-disk1.vmdk");
        assert!(parse("MD5(x)= 00").is_err());
        assert!(parse("SHA1 x 00").is_err());
        assert!(parse("SHA1(x)= zz").is_err());
    }

    #[test]
    fn digests_match_known_values() {
        let mut seen = 0;
        let sha1 = digest(Algorithm::Sha1, &b"abc"[..], &mut |n| seen = n).unwrap();
        assert_eq!(sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(seen, 3);
        let sha256 = digest(Algorithm::Sha256, &b"abc"[..], &mut |_| {}).unwrap();
        assert_eq!(
            sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            line(Algorithm::Sha256, "a.ovf", "00"),
            "SHA256(a.ovf)= 00\n"
        );
    }
}
