//! A real `cimvirtd serve` on free loopback ports in a temporary data directory, with the
//! users `admin` (read-write) and `operator` (read-only), and its memory and threads as
//! /proc shows them.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cimvirtd;

/// `admin`'s password.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// `operator`'s password (read-only rights).
pub const OPERATOR: (&str, &str) = ("operator", "operator-password-2");

/// A running server.
pub struct TestServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Its HTTP port on 127.0.0.1.
    pub http_port: u16,
    /// Its HTTPS port on 127.0.0.1.
    pub https_port: u16,
}

/// What /proc says of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStatus {
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Threads.
    pub threads: u32,
}

/// The port of the listener for `scheme` that a server's log reports
/// (`listening ... scheme=Https addr=127.0.0.1:PORT`, or its JSON form).
fn listening_port(log: &str, scheme: &str) -> u16 {
    let field = format!("scheme={scheme} addr=");
    log.lines()
        .filter(|line| line.contains("listening"))
        .map(|line| line.replace("\":\"", "=").replace("\",\"", " "))
        .find_map(|line| {
            let addr = &line[line.find(&field)? + field.len()..];
            let addr = addr.split(|c: char| c.is_whitespace() || c == '"').next()?;
            addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
        })
        .unwrap_or_else(|| panic!("no {scheme} listener in the log: {log}"))
}

fn add_user(data: &Path, (name, password): (&str, &str), access: &str) {
    let mut child = Command::new(cimvirtd())
        .args(["user", "add", name, "--access", access, "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cimvirtd user add runs");
    use std::io::Write as _;
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password written");
    assert!(child.wait().expect("user add ends").success());
}

impl TestServer {
    /// Starts a server with `config` as its configuration file (TOML).
    pub fn start(config: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().to_path_buf();
        add_user(&data, ADMIN, "read-write");
        add_user(&data, OPERATOR, "read-only");
        std::fs::write(data.join("cimvirtd.toml"), config).expect("configuration written");
        let log = std::fs::File::create(data.join("server.log")).expect("log file");
        let child = Command::new(cimvirtd())
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(data.join("cimvirtd.toml"))
            // Port 0: the server takes whichever port is free and logs it, so no other
            // process can take the port between its choice and its bind.
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cimvirtd serve starts");
        let mut server = TestServer {
            dir,
            child: Some(child),
            http_port: 0,
            https_port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.log().contains("cimvirtd ready") {
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "cimvirtd did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = server.log();
        server.http_port = listening_port(&log, "Http");
        server.https_port = listening_port(&log, "Https");
        server
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The generated certificate.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("tls/cert.pem")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("server.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its memory and threads now.
    pub fn status(&self) -> ProcStatus {
        proc_status(self.pid())
    }

    /// SIGTERM, then its exit status and log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = self.terminate();
        (status, self.log())
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

/// What /proc/PID/status says of a process (zeros once it is gone).
pub fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ProcStatus {
        rss_mib: field("VmRSS:") as f64 / 1024.0,
        threads: field("Threads:") as u32,
    }
}

/// Samples a process's status every 20 ms on a thread of its own, keeping the peaks.
pub struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<ProcStatus>>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = ProcStatus::default();
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let now = proc_status(pid);
                peak.rss_mib = peak.rss_mib.max(now.rss_mib);
                peak.threads = peak.threads.max(now.threads);
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the peaks.
    pub fn peak(mut self) -> ProcStatus {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread
            .take()
            .expect("started")
            .join()
            .expect("the sampler ends")
    }
}
