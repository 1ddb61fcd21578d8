//! A tap device, opened by the VM process (the frames a guest sends come out of it on the
//! host, and the host's frames for it go in), brought up and attached to a Linux bridge.

use crate::netif::{self, ifreq, ioctl_ifreq};
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// An open tap device; it disappears when the last descriptor closes (it is not persistent).
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens the tap `name`, creating it if it does not exist (`cv%d` and the like let the
    /// kernel number it), non-blocking, frames without a packet-information prefix.
    pub fn open(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
        let mut request = ifreq(name)?;
        request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        ioctl_ifreq(file.as_raw_fd(), libc::TUNSETIFF as _, &mut request)
            .map_err(|e| io::Error::new(e.kind(), format!("creating tap {name}: {e}")))?;
        // SAFETY: the kernel wrote a NUL-terminated name into the IFNAMSIZ-byte array.
        let name = unsafe { CStr::from_ptr(request.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(Tap { file, name })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the interface up.
    pub fn set_up(&self) -> io::Result<()> {
        netif::set_up(&self.name)
    }

    /// Makes the tap a port of the Linux bridge `bridge`.
    pub fn attach_to_bridge(&self, bridge: &str) -> io::Result<()> {
        netif::add_to_bridge(bridge, &self.name)
    }

    /// Reads one frame; `WouldBlock` when none is waiting.
    pub fn read_frame(&self, buffer: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut &self.file, buffer)
    }

    /// Writes one frame.
    pub fn write_frame(&self, frame: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut &self.file, frame)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
