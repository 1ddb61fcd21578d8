//! Where COM1's output goes: a size-capped console log file, and listeners (the control
//! socket's event stream).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

/// Receives console output as the guest writes it, a line (or a full buffer) at a time.
pub type ConsoleListener = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Told when output is left waiting for its newline, so that whoever owns the console
/// delivers it soon with [`Console::drain`] (a prompt or an echoed keystroke ends no line).
pub type ConsoleWaker = Arc<dyn Fn() + Send + Sync>;

/// Buffered output flushes at a newline or at this many bytes.
const LINE_LIMIT: usize = 1024;

/// How much of the log a rotation copies at a time.
const COPY_CHUNK: usize = 64 << 10;

/// COM1's output sink.
pub struct Console {
    log: Option<LogFiles>,
    max_bytes: u64,
    pending: Vec<u8>,
    listener: Option<ConsoleListener>,
    waker: Option<ConsoleWaker>,
}

/// The log and the one before it, both opened when the VM starts: a confined VM process
/// names no file, so a rotation copies the log into `path.1` and empties it.
struct LogFiles {
    current: File,
    previous: File,
    len: u64,
}

impl LogFiles {
    fn rotate(&mut self) -> io::Result<()> {
        self.previous.set_len(0)?;
        let mut buffer = vec![0u8; COPY_CHUNK];
        let mut at = 0u64;
        while at < self.len {
            let n = self.current.read_at(&mut buffer, at)?;
            if n == 0 {
                break;
            }
            self.previous.write_all_at(&buffer[..n], at)?;
            at += n as u64;
        }
        // The log is opened for appending: what comes next starts it again.
        self.current.set_len(0)?;
        self.len = 0;
        Ok(())
    }
}

impl Console {
    /// Appends to `path`; when it grows past `max_bytes` its contents move to `path.1`
    /// (replacing the previous ones) and it starts again empty, so the log never takes more
    /// than twice that.
    pub fn to_file(path: &Path, max_bytes: u64) -> io::Result<Console> {
        let current = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut previous_path = path.as_os_str().to_owned();
        previous_path.push(".1");
        let previous = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(previous_path)?;
        crate::sandbox::note_console_log(&current);
        let len = current.metadata()?.len();
        Ok(Console {
            log: Some(LogFiles {
                current,
                previous,
                len,
            }),
            max_bytes,
            pending: Vec::new(),
            listener: None,
            waker: None,
        })
    }

    /// Output that goes nowhere.
    pub fn discard() -> Console {
        Console {
            log: None,
            max_bytes: 0,
            pending: Vec::new(),
            listener: None,
            waker: None,
        }
    }

    /// Also sends output to `listener`.
    pub fn set_listener(&mut self, listener: ConsoleListener) {
        self.listener = Some(listener);
    }

    /// Calls `waker` whenever output starts waiting for a newline.
    pub fn set_waker(&mut self, waker: ConsoleWaker) {
        self.waker = Some(waker);
    }

    fn deliver(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.pending);
        if let Some(listener) = &self.listener {
            listener(&chunk);
        }
        if let Some(log) = &mut self.log {
            if log.len + chunk.len() as u64 > self.max_bytes {
                log.rotate()?;
            }
            log.current.write_all(&chunk)?;
            log.len += chunk.len() as u64;
        }
        Ok(())
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let was_waiting = !self.pending.is_empty();
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n') || self.pending.len() >= LINE_LIMIT {
            self.deliver()?;
        } else if !was_waiting {
            if let Some(waker) = &self.waker {
                waker();
            }
        }
        Ok(buf.len())
    }

    /// The 16550 model flushes after every byte; output is delivered a line at a time all the
    /// same, and [`Console::drain`] delivers what is left.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Console {
    /// Delivers buffered output that has no newline yet.
    pub fn drain(&mut self) -> io::Result<()> {
        self.deliver()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn lines_reach_the_listener_and_the_log_rotates_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut console = Console::to_file(&path, 64).unwrap();
        let sink = seen.clone();
        console.set_listener(Arc::new(move |b| sink.lock().unwrap().extend_from_slice(b)));
        for i in 0..10 {
            writeln!(console, "line {i} of the console").unwrap();
        }
        write!(console, "partial").unwrap();
        assert!(String::from_utf8_lossy(&seen.lock().unwrap()).ends_with("line 9 of the console\n"));
        let current = std::fs::read_to_string(&path).unwrap();
        let previous = std::fs::read_to_string(dir.path().join("console.log.1")).unwrap();
        assert!(
            current.len() <= 64 && previous.len() <= 64,
            "{current:?} {previous:?}"
        );
        assert!(current.ends_with("line 9 of the console\n"));
        console.flush().unwrap();
        assert!(!String::from_utf8_lossy(&seen.lock().unwrap()).ends_with("partial"));
        console.drain().unwrap();
        assert!(String::from_utf8_lossy(&seen.lock().unwrap()).ends_with("partial"));
    }

    #[test]
    fn output_left_without_a_newline_wakes_the_owner_once() {
        let wakes = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = wakes.clone();
        let mut console = Console::discard();
        console.set_waker(Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        write!(console, "login: ").unwrap();
        write!(console, "r").unwrap();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        console.drain().unwrap();
        writeln!(console, "a whole line").unwrap();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        write!(console, "$ ").unwrap();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
