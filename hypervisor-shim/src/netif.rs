//! Network interface ioctls (SIOC*, on an AF_INET socket): bring an interface up, find its
//! index, and create, delete and fill Linux bridges. Used by taps and by the host's bridges.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// linux/sockios.h: the bridge ioctls (libc does not carry them for Linux).
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRDELBR: libc::c_ulong = 0x89a1;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// An `ifreq` naming `name`.
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
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
pub(crate) fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl(2) with an `ifreq`, which the kernel reads and may write.
pub(crate) fn ioctl_ifreq(
    fd: RawFd,
    request: libc::c_ulong,
    ifr: &mut libc::ifreq,
) -> io::Result<()> {
    // SAFETY: every request used here takes a pointer to one `ifreq`, which lives across the
    // call; the kernel writes no more than its size.
    let result = unsafe { libc::ioctl(fd, request as _, ifr as *mut libc::ifreq) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets interface `name` up.
pub fn set_up(name: &str) -> io::Result<()> {
    let socket = control_socket()?;
    let mut request = ifreq(name)?;
    ioctl_ifreq(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request)
        .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl_ifreq(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut request)
        .map_err(|e| io::Error::new(e.kind(), format!("setting {name} up: {e}")))
}

/// Makes interface `port` a port of bridge `bridge`.
pub fn add_to_bridge(bridge: &str, port: &str) -> io::Result<()> {
    let socket = control_socket()?;
    let mut request = ifreq(port)?;
    ioctl_ifreq(socket.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut request)?;
    // SAFETY: SIOCGIFINDEX filled the index member of the union.
    let index = unsafe { request.ifr_ifru.ifru_ifindex };
    let mut request = ifreq(bridge)?;
    request.ifr_ifru.ifru_ifindex = index;
    ioctl_ifreq(socket.as_raw_fd(), SIOCBRADDIF, &mut request).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("attaching {port} to bridge {bridge}: {e}"),
        )
    })
}

/// SIOCBRADDBR or SIOCBRDELBR, which take the bridge's name itself.
fn bridge_ioctl(request: libc::c_ulong, name: &str) -> io::Result<()> {
    ifreq(name)?;
    let name = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let socket = control_socket()?;
    // SAFETY: both requests read a NUL-terminated name of at most IFNAMSIZ bytes (checked
    // above), which lives across the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), request as _, name.as_ptr()) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates the Linux bridge `name` and sets it up.
pub fn create_bridge(name: &str) -> io::Result<()> {
    bridge_ioctl(SIOCBRADDBR, name)
        .map_err(|e| io::Error::new(e.kind(), format!("creating bridge {name}: {e}")))?;
    set_up(name)
}

/// Deletes the Linux bridge `name` (it must be down: it is set down first).
pub fn delete_bridge(name: &str) -> io::Result<()> {
    let socket = control_socket()?;
    let mut request = ifreq(name)?;
    ioctl_ifreq(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request)
        .map_err(|e| io::Error::new(e.kind(), format!("bridge {name}: {e}")))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags & !(libc::IFF_UP as libc::c_short);
    ioctl_ifreq(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut request)?;
    bridge_ioctl(SIOCBRDELBR, name)
        .map_err(|e| io::Error::new(e.kind(), format!("deleting bridge {name}: {e}")))
}

/// A Linux bridge on this host (in this network namespace).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bridge {
    /// Its name.
    pub name: String,
    /// Whether it is up.
    pub up: bool,
    /// Its ports (taps, physical interfaces).
    pub ports: Vec<String>,
}

/// Every bridge, by name, from sysfs.
pub fn bridges() -> io::Result<Vec<Bridge>> {
    let mut bridges = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")? {
        let path = entry?.path();
        if !path.join("bridge").is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flags = std::fs::read_to_string(path.join("flags")).unwrap_or_default();
        let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
            .is_ok_and(|f| f & libc::IFF_UP as u32 != 0);
        let mut ports: Vec<String> = std::fs::read_dir(path.join("brif"))
            .map(|ports| {
                ports
                    .filter_map(|p| Some(p.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        ports.sort();
        bridges.push(Bridge { name, up, ports });
    }
    bridges.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(bridges)
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
        assert!(create_bridge("a/b").is_err());
    }
}
