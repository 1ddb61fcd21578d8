//! Disk images in other formats (VMDK, VHD, VHDX, qcow2, raw), read and written with
//! `qemu-img` (Debian's qemu-utils), which converts files and never runs a guest. A source
//! is a file or a byte range of one (a member of an OVA, read where it lies). Images come
//! from outside the host, so a header naming other files (a backing file, a VMDK's flat
//! extents) is refused before anything is read through it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why an image could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// qemu-img could not run.
    #[error("qemu-img (Debian package qemu-utils) could not run: {0}")]
    Missing(std::io::Error),
    /// qemu-img refused or failed.
    #[error("{0}")]
    Failed(String),
    /// The image names other files, or is not the format it claims.
    #[error("{0}")]
    Refused(String),
}

/// An image to read: a file, or `len` bytes of one from `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSource {
    /// The file.
    pub path: PathBuf,
    /// The byte range (offset, length) the image occupies, when not the whole file.
    pub range: Option<(u64, u64)>,
    /// qemu-img's name of its format; probed from the header when `None`.
    pub format: Option<String>,
}

/// What qemu-img reads from an image's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format (qemu-img's name).
    pub format: String,
    /// The disk's size in bytes.
    pub virtual_size: u64,
}

fn quote_json(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

impl ImageSource {
    /// The image's name as qemu-img takes it: the path, or a `json:` block device for a
    /// byte range (the raw driver's offset and size over the file), whose format qemu-img
    /// probes when `format` is `None`.
    fn qemu_filename(&self, format: Option<&str>) -> String {
        match self.range {
            None => self.path.display().to_string(),
            Some((offset, len)) => {
                let file = format!(
                    r#"{{"driver":"raw","offset":{offset},"size":{len},"file":{{"driver":"file","filename":{}}}}}"#,
                    quote_json(&self.path.display().to_string())
                );
                match format {
                    Some(f) => format!(r#"json:{{"driver":{},"file":{file}}}"#, quote_json(f)),
                    None => format!(r#"json:{{"file":{file}}}"#),
                }
            }
        }
    }
}

/// Reads the image's header: its format and size. Refuses one with a backing file or, for
/// VMDK, any layout but the single-file ones (monolithicSparse, streamOptimized), whose
/// descriptors could name other host files as extents; and one whose header is not the
/// format the source claims.
pub fn inspect(source: &ImageSource) -> Result<ImageInfo, ImageError> {
    let mut command = Command::new("qemu-img");
    command.args(["info", "--output=json"]);
    // A json: name carries its own driver; a plain file is told its format, if known.
    if let (None, Some(format)) = (source.range, &source.format) {
        command.args(["-f", format]);
    }
    let output = command
        .arg(source.qemu_filename(source.format.as_deref()))
        .output()
        .map_err(ImageError::Missing)?;
    if !output.status.success() {
        return Err(ImageError::Failed(format!(
            "{}: {}",
            source.path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| ImageError::Failed(format!("qemu-img info: {e}")))?;
    if let Some(backing) = info.get("backing-filename").and_then(|b| b.as_str()) {
        return Err(ImageError::Refused(format!(
            "{}: the image has a backing file ({backing}); only self-contained images are read",
            source.path.display()
        )));
    }
    let format = info
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or_default()
        .to_owned();
    if format == "vmdk" {
        let create_type = info
            .pointer("/format-specific/data/create-type")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        if !matches!(create_type, "monolithicSparse" | "streamOptimized") {
            return Err(ImageError::Refused(format!(
                "{}: a VMDK of type {create_type:?}; only single-file VMDKs \
                 (monolithicSparse, streamOptimized) are read",
                source.path.display()
            )));
        }
    }
    let virtual_size = info
        .get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| ImageError::Failed("qemu-img info gave no virtual-size".into()))?;
    Ok(ImageInfo {
        format,
        virtual_size,
    })
}

/// Converts `source` into a new file `dest` in `dest_format` (`-o` options in `options`),
/// calling `progress` with the fraction done (0.0 to 1.0) as qemu-img reports it.
pub fn convert(
    source: &ImageSource,
    source_format: &str,
    dest: &Path,
    dest_format: &str,
    options: Option<&str>,
    progress: &mut dyn FnMut(f64),
) -> Result<(), ImageError> {
    let mut command = Command::new("qemu-img");
    command.args(["convert", "-p"]);
    if source.range.is_none() {
        command.args(["-f", source_format]);
    }
    command
        .arg(source.qemu_filename(Some(source_format)))
        .args(["-O", dest_format]);
    if let Some(options) = options {
        command.args(["-o", options]);
    }
    command
        .arg(dest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(ImageError::Missing)?;
    let stderr = child.stderr.take();
    // stderr is read on its own thread so that neither pipe fills while the other is read.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(64 << 10).read_to_string(&mut text);
        }
        text
    });
    if let Some(mut stdout) = child.stdout.take() {
        // qemu-img -p writes "    (12.34/100%)\r" as it goes.
        let mut buffer = [0u8; 512];
        let mut pending = String::new();
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 {
                break;
            }
            pending.push_str(&String::from_utf8_lossy(&buffer[..n]));
            while let Some(end) = pending.find(['\r', '\n']) {
                let line: String = pending.drain(..=end).collect();
                if let Some(percent) = line
                    .trim()
                    .strip_prefix('(')
                    .and_then(|l| l.split('/').next())
                    .and_then(|p| p.parse::<f64>().ok())
                {
                    progress((percent / 100.0).clamp(0.0, 1.0));
                }
            }
        }
    }
    let status = child.wait().map_err(ImageError::Missing)?;
    let errors = errors.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(ImageError::Failed(format!(
            "{}: {}",
            source.path.display(),
            errors.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_a_raw_node_over_the_file() {
        let source = ImageSource {
            path: PathBuf::from("/x/a \"b\".ova"),
            range: Some((512, 1024)),
            format: Some("vmdk".into()),
        };
        let name = source.qemu_filename(Some("vmdk"));
        let json: serde_json::Value =
            serde_json::from_str(name.strip_prefix("json:").unwrap()).unwrap();
        assert_eq!(json["driver"], "vmdk");
        assert_eq!(json["file"]["offset"], 512);
        assert_eq!(json["file"]["size"], 1024);
        assert_eq!(json["file"]["file"]["filename"], "/x/a \"b\".ova");
        let whole = ImageSource {
            range: None,
            ..source
        };
        assert_eq!(whole.qemu_filename(Some("vmdk")), "/x/a \"b\".ova");
    }
}
