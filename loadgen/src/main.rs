//! `cimload`: a load generator for CIM-XML servers (cimvirtd, OpenPegasus, ...).
//!
//! `cimload run` drives one operation from N concurrent keep-alive connections for a
//! while and prints requests per second, p50/p99 latency and, given the server's PID,
//! the server's CPU time per request (from /proc). `cimload populate` creates instances
//! to enumerate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(
    name = "cimload",
    about = "Load generator for CIM-XML (DSP0200) servers"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Server URL: http://host:port or https://host:port.
    #[arg(long)]
    url: String,
    /// User name.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Password.
    #[arg(long)]
    password: String,
    /// CA certificate (PEM) that signs the server certificate, for https.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Namespace.
    #[arg(long, default_value = "root/virt")]
    namespace: String,
}

/// Options of `cimload run`.
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The operation.
    #[arg(long, value_enum)]
    op: Op,
    /// Class for get-class, get-instance and enumerate-instances.
    #[arg(long, default_value = "CIM_ManagedElement")]
    class: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// PID of the server, to report its CPU time per request and its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print a Markdown table row instead of a report.
    #[arg(long)]
    row: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one operation.
    Run(RunArgs),
    /// Create COUNT instances of a keyed test class (created if missing).
    Populate {
        #[command(flatten)]
        target: Target,
        /// The class to create (a subclass of CIM_ManagedElement keyed by Id).
        #[arg(long)]
        class: String,
        /// How many instances.
        #[arg(long)]
        count: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Op {
    EnumerateClassNames,
    GetClass,
    GetInstance,
    EnumerateInstances,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::EnumerateClassNames => "EnumerateClassNames",
            Op::GetClass => "GetClass",
            Op::GetInstance => "GetInstance",
            Op::EnumerateInstances => "EnumerateInstances",
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn namespace_xml(ns: &str) -> String {
    let segs: String = ns
        .split('/')
        .map(|s| format!("<NAMESPACE NAME=\"{}\"/>", escape(s)))
        .collect();
    format!("<LOCALNAMESPACEPATH>{segs}</LOCALNAMESPACEPATH>")
}

fn call_xml(method: &str, ns: &str, params: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
         <MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"{method}\">{}{params}\
         </IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>",
        namespace_xml(ns)
    )
}

fn class_param(name: &str, class: &str) -> String {
    format!(
        "<IPARAMVALUE NAME=\"{name}\"><CLASSNAME NAME=\"{}\"/></IPARAMVALUE>",
        escape(class)
    )
}

/// One keep-alive connection.
struct Client {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
    auth: String,
    host: String,
}

fn tls_connector(ca: &Option<PathBuf>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = ca.as_ref().ok_or("https needs --ca-cert")?;
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Client {
    async fn connect(target: &Target) -> Result<Client, String> {
        let (https, rest) = if let Some(r) = target.url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = target.url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "URL must start with http:// or https://: {}",
                target.url
            ));
        };
        let host = rest.trim_end_matches('/').to_string();
        let tcp = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let sender = if https {
            let server = host
                .rsplit_once(':')
                .map_or(host.as_str(), |(h, _)| h)
                .to_string();
            let name =
                rustls::pki_types::ServerName::try_from(server).map_err(|e| e.to_string())?;
            let tls = tls_connector(&target.ca_cert)?
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", target.user, target.password))
        );
        Ok(Client {
            target: target.clone(),
            sender,
            auth,
            host,
        })
    }

    /// Sends one intrinsic call; returns the response body.
    async fn call(&mut self, method: &str, body: &str) -> Result<Bytes, String> {
        let req = Request::post("/cimom")
            .header("Host", &self.host)
            .header("Content-Type", "application/xml; charset=\"utf-8\"")
            .header("CIMOperation", "MethodCall")
            .header("CIMMethod", method)
            .header("CIMObject", self.target.namespace.replace('/', "%2F"))
            .header("Authorization", &self.auth)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        if bytes.windows(7).any(|w| w == b"<ERROR ") {
            return Err(format!("CIM error: {}", String::from_utf8_lossy(&bytes)));
        }
        Ok(bytes)
    }
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Clock ticks per second, from the auxiliary vector (AT_CLKTCK = 17).
fn clock_ticks() -> f64 {
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    for pair in auxv.chunks_exact(16) {
        let key = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
        let value = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
        if key == 17 && value > 0 {
            return value as f64;
        }
    }
    100.0
}

/// VmRSS and VmHWM of the process in MiB.
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn first_instance_name(xml: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(xml).ok()?;
    let start = s.find("<INSTANCENAME")?;
    let end = s[start..].find("</INSTANCENAME>")? + start + "</INSTANCENAME>".len();
    Some(s[start..end].to_string())
}

async fn request_body(target: &Target, op: Op, class: &str) -> Result<String, String> {
    let ns = &target.namespace;
    Ok(match op {
        Op::EnumerateClassNames => call_xml(
            "EnumerateClassNames",
            ns,
            "<IPARAMVALUE NAME=\"DeepInheritance\"><VALUE>TRUE</VALUE></IPARAMVALUE>",
        ),
        Op::GetClass => call_xml(
            "GetClass",
            ns,
            &format!(
                "{}<IPARAMVALUE NAME=\"LocalOnly\"><VALUE>FALSE</VALUE></IPARAMVALUE>",
                class_param("ClassName", class)
            ),
        ),
        Op::EnumerateInstances => {
            call_xml("EnumerateInstances", ns, &class_param("ClassName", class))
        }
        Op::GetInstance => {
            let mut c = Client::connect(target).await?;
            let names = c
                .call(
                    "EnumerateInstanceNames",
                    &call_xml(
                        "EnumerateInstanceNames",
                        ns,
                        &class_param("ClassName", class),
                    ),
                )
                .await?;
            let name =
                first_instance_name(&names).ok_or(format!("class {class} has no instances"))?;
            call_xml(
                "GetInstance",
                ns,
                &format!("<IPARAMVALUE NAME=\"InstanceName\">{name}</IPARAMVALUE>"),
            )
        }
    })
}

struct Measured {
    requests: usize,
    bytes: usize,
    latencies_us: Vec<u32>,
    elapsed: f64,
    cpu: Option<f64>,
}

async fn measure(
    target: &Target,
    op: Op,
    body: Arc<String>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    pid: Option<u32>,
) -> Result<Measured, String> {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let cpu_before = Arc::new(std::sync::Mutex::new(None));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        let body = body.clone();
        let cpu_before = cpu_before.clone();
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(&target).await?;
            let mut latencies = Vec::new();
            let mut bytes = 0usize;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                if t0 >= start {
                    let mut first = cpu_before.lock().expect("not poisoned");
                    if first.is_none() {
                        *first = Some(pid.and_then(cpu_seconds));
                    }
                }
                let resp = client.call(op.name(), &body).await?;
                if t0 >= start {
                    latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    bytes += resp.len();
                }
            }
            Ok::<_, String>((latencies, bytes))
        }));
    }
    let mut latencies_us = Vec::new();
    let mut bytes = 0;
    for w in workers {
        let (l, b) = w.await.map_err(|e| e.to_string())??;
        latencies_us.extend(l);
        bytes += b;
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let cpu = match (
        *cpu_before.lock().expect("not poisoned"),
        pid.and_then(cpu_seconds),
    ) {
        (Some(Some(before)), Some(after)) => Some(after - before),
        _ => None,
    };
    latencies_us.sort_unstable();
    Ok(Measured {
        requests: latencies_us.len(),
        bytes,
        latencies_us,
        elapsed,
        cpu,
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn populate(
    target: Target,
    class: String,
    count: usize,
    concurrency: usize,
) -> Result<(), String> {
    let mut c = Client::connect(&target).await?;
    let ns = &target.namespace;
    let exists = c
        .call(
            "GetClass",
            &call_xml("GetClass", ns, &class_param("ClassName", &class)),
        )
        .await
        .is_ok();
    if !exists {
        let cls = format!(
            "<IPARAMVALUE NAME=\"NewClass\"><CLASS NAME=\"{0}\" SUPERCLASS=\"CIM_ManagedElement\">\
             <PROPERTY NAME=\"Id\" TYPE=\"string\"><QUALIFIER NAME=\"Key\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></QUALIFIER></PROPERTY>\
             <PROPERTY NAME=\"Counter\" TYPE=\"uint32\"/><PROPERTY.ARRAY NAME=\"Tags\" TYPE=\"string\"/></CLASS></IPARAMVALUE>",
            escape(&class)
        );
        c.call("CreateClass", &call_xml("CreateClass", ns, &cls))
            .await?;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let target = target.clone();
        let class = class.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut c = Client::connect(&target).await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(());
                }
                let inst = format!(
                    "<IPARAMVALUE NAME=\"NewInstance\"><INSTANCE CLASSNAME=\"{0}\">\
                     <PROPERTY NAME=\"Id\" TYPE=\"string\"><VALUE>item-{i:07}</VALUE></PROPERTY>\
                     <PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>Instance number {i} of {0}</VALUE></PROPERTY>\
                     <PROPERTY NAME=\"Description\" TYPE=\"string\"><VALUE>A test instance created by cimload populate, with some text to make it realistic</VALUE></PROPERTY>\
                     <PROPERTY NAME=\"Counter\" TYPE=\"uint32\"><VALUE>{i}</VALUE></PROPERTY>\
                     <PROPERTY.ARRAY NAME=\"Tags\" TYPE=\"string\"><VALUE.ARRAY><VALUE>bench</VALUE><VALUE>load</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>\
                     </INSTANCE></IPARAMVALUE>",
                    escape(&class)
                );
                let body = call_xml("CreateInstance", &target.namespace, &inst);
                match c.call("CreateInstance", &body).await {
                    Ok(_) => {}
                    // CIM_ERR_ALREADY_EXISTS: populated by an earlier run; keep going.
                    Err(e) if e.contains("CODE=\"11\"") => {}
                    Err(e) => return Err(e),
                }
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    eprintln!(
        "created {count} instances of {class} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Populate {
            target,
            class,
            count,
            concurrency,
        } => populate(target, class, count, concurrency).await,
        Command::Run(args) => run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cimload: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let RunArgs {
        target,
        op,
        class,
        concurrency,
        duration,
        warmup,
        server_pid: pid,
        row,
    } = args;
    let body = Arc::new(request_body(&target, op, &class).await?);
    // Reset the server's peak RSS (VmHWM) so the report shows the peak of this run; this
    // needs the right to write the process's clear_refs (same user or root).
    if let Some(pid) = pid {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let mem_before = pid.and_then(memory_mib);
    let m = measure(
        &target,
        op,
        body,
        concurrency.max(1),
        Duration::from_secs_f64(warmup),
        Duration::from_secs_f64(duration),
        pid,
    )
    .await?;
    let rps = m.requests as f64 / m.elapsed;
    let p50 = percentile(&m.latencies_us, 0.50);
    let p99 = percentile(&m.latencies_us, 0.99);
    let cpu_us = m.cpu.map(|c| c * 1e6 / m.requests.max(1) as f64);
    let scheme = target.url.split("://").next().unwrap_or("?");
    let avg_kib = m.bytes as f64 / m.requests.max(1) as f64 / 1024.0;
    let mem_after = pid.and_then(memory_mib);
    if row {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} |",
            op.name(),
            if op == Op::EnumerateClassNames {
                "(all)"
            } else {
                class.as_str()
            },
            scheme.to_uppercase(),
            concurrency,
            rps,
            p50,
            p99,
            cpu_us.map_or("n/a".into(), |c| format!("{c:.0}")),
            avg_kib
        );
    } else {
        println!(
            "{} {} over {} x{}: {} requests in {:.1} s",
            op.name(),
            class,
            scheme,
            concurrency,
            m.requests,
            m.elapsed
        );
        println!(
            "  {rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {avg_kib:.1} KiB per response"
        );
        if let Some(c) = cpu_us {
            println!("  server CPU {c:.0} us per request");
        }
        if let (Some((rss0, _)), Some((rss1, hwm))) = (mem_before, mem_after) {
            println!("  server memory: RSS {rss0:.1} MiB before, {rss1:.1} MiB after, peak {hwm:.1} MiB during the run");
        }
    }
    Ok(())
}
