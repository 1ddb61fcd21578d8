//! A tap device, opened by the VM process (the frames a guest sends come out of it on the
//! host, and the host's frames for it go in), brought up and attached to a Linux bridge.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// linux/sockios.h: add an interface to a bridge (libc does not carry it for Linux).
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// An open tap device; it disappears when the last descriptor closes (it is not persistent).
pub struct Tap {
    file: File,
    name: String,
}

/// An `ifreq` naming `name`.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a network interface name (1 to 15 bytes, no '/')"),
        ));
    }
    // SAFETY: ifreq is plain old data; all zeros is a valid value of it.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

/// A socket to address network interface ioctls to.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl(2) with an `ifreq`, which the kernel reads and may write.
fn ioctl_ifreq(fd: RawFd, request: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request used here takes a pointer to one `ifreq`, which lives across the
    // call; the kernel writes no more than its size.
    let result = unsafe { libc::ioctl(fd, request as _, ifr as *mut libc::ifreq) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
        let socket = control_socket()?;
        let mut request = ifreq(&self.name)?;
        ioctl_ifreq(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { request.ifr_ifru.ifru_flags };
        request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        ioctl_ifreq(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut request)
            .map_err(|e| io::Error::new(e.kind(), format!("setting {} up: {e}", self.name)))
    }

    /// Makes the tap a port of the Linux bridge `bridge`.
    pub fn attach_to_bridge(&self, bridge: &str) -> io::Result<()> {
        let socket = control_socket()?;
        let mut request = ifreq(&self.name)?;
        ioctl_ifreq(socket.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut request)?;
        // SAFETY: SIOCGIFINDEX filled the index member of the union.
        let index = unsafe { request.ifr_ifru.ifru_ifindex };
        let mut request = ifreq(bridge)?;
        request.ifr_ifru.ifru_ifindex = index;
        ioctl_ifreq(socket.as_raw_fd(), SIOCBRADDIF, &mut request).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("attaching {} to bridge {bridge}: {e}", self.name),
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(ifreq("tap0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("sixteen-bytes-xx").is_err());
        assert!(ifreq("a/b").is_err());
    }
}
