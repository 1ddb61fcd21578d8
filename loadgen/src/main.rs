//! `cimload`: a load generator for CIM-XML and WS-Management servers (cimvirtd,
//! OpenPegasus, ...).
//!
//! `cimload run` drives one operation from N concurrent keep-alive connections for a
//! while and prints the rate, p50/p99 latency and, given the server's PID, the server's
//! CPU time per operation and per instance (from /proc). `cimload compare` runs the same
//! reads over CIM-XML and over WS-Man and prints them side by side. `cimload populate`
//! creates instances to read.

mod cimxml;
mod client;
mod stats;
mod workload;
mod wsman;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use client::{Client, Target};
use workload::{Op, Workload};

#[derive(Parser)]
#[command(
    name = "cimload",
    about = "Load generator for CIM-XML (DSP0200) and WS-Management (DSP0226) servers"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// How long and how hard to drive an operation.
#[derive(clap::Args, Clone)]
struct Load {
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// PID of the server, to report its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Instances per response of the paged enumerations (MaxObjectCount, MaxElements).
    #[arg(long, default_value_t = 100)]
    max_objects: u32,
}

/// Options of `cimload run`.
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    load: Load,
    /// The operation.
    #[arg(long, value_enum)]
    op: Op,
    /// The class the operation reads.
    #[arg(long, default_value = "CIM_ManagedElement")]
    class: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Print a Markdown table row instead of a report.
    #[arg(long)]
    row: bool,
    /// Print one tab-separated line instead of a report, for scripts: requests/s, p50 ms,
    /// p99 ms, server CPU µs per request, KiB per response, server RSS MiB before and
    /// after ("-" where the server's PID was not given).
    #[arg(long, conflicts_with = "row")]
    tsv: bool,
}

/// Options of `cimload compare`.
#[derive(clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    load: Load,
    /// The classes to read (each gives one group of rows).
    #[arg(long, required = true, num_args = 1..)]
    class: Vec<String>,
    /// Concurrencies to run each pair at.
    #[arg(long, num_args = 1.., default_values_t = [1usize, 16])]
    concurrency: Vec<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one operation.
    Run(RunArgs),
    /// Measure the same reads over CIM-XML and WS-Man and print a table with the ratio of
    /// server CPU per instance.
    Compare(CompareArgs),
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

/// The figures of one measured run.
struct Measured {
    units: usize,
    requests_bytes: usize,
    instances: usize,
    latencies_us: Vec<u32>,
    elapsed: f64,
    cpu: Option<f64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed
    }
    fn cpu_us_per_unit(&self) -> Option<f64> {
        self.cpu.map(|c| c * 1e6 / self.units.max(1) as f64)
    }
    fn cpu_us_per_instance(&self) -> Option<f64> {
        self.cpu.map(|c| c * 1e6 / self.instances.max(1) as f64)
    }
    fn kib_per_unit(&self) -> f64 {
        self.requests_bytes as f64 / self.units.max(1) as f64 / 1024.0
    }
    fn instances_per_unit(&self) -> f64 {
        self.instances as f64 / self.units.max(1) as f64
    }
}

/// Repeats `work` from `concurrency` connections for the load's duration after its
/// warm-up, and reads the server's CPU time at both ends of the measured part.
async fn measure(
    target: &Target,
    work: Arc<Workload>,
    concurrency: usize,
    load: &Load,
) -> Result<Measured, String> {
    let start = Instant::now() + Duration::from_secs_f64(load.warmup);
    let end = start + Duration::from_secs_f64(load.duration);
    let pid = load.server_pid;
    let cpu_before = Arc::new(std::sync::Mutex::new(None));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let target = target.clone();
        let work = work.clone();
        let cpu_before = cpu_before.clone();
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(&target).await?;
            let (mut latencies, mut bytes, mut instances) = (Vec::new(), 0usize, 0usize);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                if t0 >= start {
                    let mut first = cpu_before.lock().expect("not poisoned");
                    if first.is_none() {
                        *first = Some(pid.and_then(stats::cpu_seconds));
                    }
                }
                let done = work.run_once(&mut client, &target).await?;
                if t0 >= start {
                    latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    bytes += done.bytes;
                    instances += done.instances;
                }
            }
            Ok::<_, String>((latencies, bytes, instances))
        }));
    }
    let (mut latencies_us, mut requests_bytes, mut instances) = (Vec::new(), 0, 0);
    for w in workers {
        let (l, b, i) = w.await.map_err(|e| e.to_string())??;
        latencies_us.extend(l);
        requests_bytes += b;
        instances += i;
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let cpu = match (
        *cpu_before.lock().expect("not poisoned"),
        pid.and_then(stats::cpu_seconds),
    ) {
        (Some(Some(before)), Some(after)) => Some(after - before),
        _ => None,
    };
    latencies_us.sort_unstable();
    Ok(Measured {
        units: latencies_us.len(),
        requests_bytes,
        instances,
        latencies_us,
        elapsed,
        cpu,
    })
}

fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.decimals$}"))
}

async fn populate(
    target: Target,
    class: String,
    count: usize,
    concurrency: usize,
) -> Result<(), String> {
    let mut c = Client::connect(&target).await?;
    let ns = target.namespace.clone();
    let get_class = cimxml::call_xml("GetClass", &ns, &cimxml::class_param("ClassName", &class));
    if cimxml::call(&mut c, &ns, "GetClass", get_class)
        .await
        .is_err()
    {
        let cls = format!(
            "<IPARAMVALUE NAME=\"NewClass\"><CLASS NAME=\"{0}\" SUPERCLASS=\"CIM_ManagedElement\">\
             <PROPERTY NAME=\"Id\" TYPE=\"string\"><QUALIFIER NAME=\"Key\" TYPE=\"boolean\" OVERRIDABLE=\"false\"><VALUE>TRUE</VALUE></QUALIFIER></PROPERTY>\
             <PROPERTY NAME=\"Counter\" TYPE=\"uint32\"/><PROPERTY.ARRAY NAME=\"Tags\" TYPE=\"string\"/></CLASS></IPARAMVALUE>",
            cimxml::escape(&class)
        );
        let body = cimxml::call_xml("CreateClass", &ns, &cls);
        cimxml::call(&mut c, &ns, "CreateClass", body).await?;
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
            let ns = target.namespace.as_str();
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
                    cimxml::escape(&class)
                );
                let body = cimxml::call_xml("CreateInstance", ns, &inst);
                match cimxml::call(&mut c, ns, "CreateInstance", body).await {
                    Ok(_) => {}
                    // CIM_ERR_ALREADY_EXISTS: populated by an earlier run; keep going.
                    Err(e) if e.starts_with("CIM error 11:") => {}
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

async fn run(args: RunArgs) -> Result<(), String> {
    let RunArgs {
        target,
        load,
        op,
        class,
        concurrency,
        row,
        tsv,
    } = args;
    let work = Arc::new(Workload::prepare(&target, op, &class, load.max_objects).await?);
    let pid = load.server_pid;
    // Reset the server's peak RSS (VmHWM) so the report shows the peak of this run; this
    // needs the right to write the process's clear_refs (same user or root).
    if let Some(pid) = pid {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let mem_before = pid.and_then(stats::memory_mib);
    let m = measure(&target, work, concurrency, &load).await?;
    let p50 = stats::percentile(&m.latencies_us, 0.50);
    let p99 = stats::percentile(&m.latencies_us, 0.99);
    let scheme = target.scheme();
    if tsv {
        let mem_after = pid.and_then(stats::memory_mib);
        let rss = |m: Option<(f64, f64)>| m.map_or("-".to_owned(), |(rss, _)| format!("{rss:.1}"));
        println!(
            "{:.0}\t{p50:.2}\t{p99:.2}\t{}\t{:.1}\t{}\t{}",
            m.rate(),
            figure(m.cpu_us_per_unit(), 0),
            m.kib_per_unit(),
            rss(mem_before),
            rss(mem_after)
        );
        return Ok(());
    }
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
            m.rate(),
            p50,
            p99,
            figure(m.cpu_us_per_unit(), 0),
            m.kib_per_unit()
        );
        return Ok(());
    }
    println!(
        "{} ({}) {class} over {scheme} x{concurrency}: {} operations in {:.1} s",
        op.name(),
        op.protocol(),
        m.units,
        m.elapsed
    );
    println!(
        "  {:.0} operations/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} KiB and {:.0} instances per operation",
        m.rate(),
        m.kib_per_unit(),
        m.instances_per_unit()
    );
    if let Some(c) = m.cpu_us_per_unit() {
        println!(
            "  server CPU {c:.0} us per operation, {} us per instance",
            figure(m.cpu_us_per_instance(), 1)
        );
    }
    let mem_after = pid.and_then(stats::memory_mib);
    if let (Some((rss0, _)), Some((rss1, hwm))) = (mem_before, mem_after) {
        println!("  server memory: RSS {rss0:.1} MiB before, {rss1:.1} MiB after, peak {hwm:.1} MiB during the run");
    }
    Ok(())
}

/// Pairs of a CIM-XML read and the WS-Man read that returns the same instances.
const PAIRS: [(&str, Op, Op); 3] = [
    ("Get one instance", Op::GetInstance, Op::WsmanGet),
    (
        "Enumerate, instances with paths, paged",
        Op::PullInstances,
        Op::WsmanEnumerateWithEpr,
    ),
    (
        "Enumerate, each protocol's usual way",
        Op::EnumerateInstances,
        Op::WsmanEnumerate,
    ),
];

async fn compare(args: CompareArgs) -> Result<(), String> {
    let CompareArgs {
        target,
        load,
        class,
        concurrency,
    } = args;
    if load.server_pid.is_none() {
        return Err("compare needs --server-pid: it compares the server's CPU time".into());
    }
    println!(
        "| Read | Class | Protocol | Operation | Concurrency | ops/s | p50 ms | p99 ms | instances/op | KiB/op | server CPU µs/op | µs/instance | WS-Man / CIM-XML |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for class in &class {
        for (label, cim, ws) in PAIRS {
            for &c in &concurrency {
                let mut baseline = None;
                for op in [cim, ws] {
                    let work =
                        Arc::new(Workload::prepare(&target, op, class, load.max_objects).await?);
                    let m = measure(&target, work, c, &load).await?;
                    let per_instance = m.cpu_us_per_instance();
                    let ratio = match (op == ws, baseline, per_instance) {
                        (true, Some(b), Some(w)) if b > 0.0 => format!("{:.2}", w / b),
                        _ => String::new(),
                    };
                    baseline = baseline.or(per_instance);
                    let operation = match op {
                        Op::PullInstances | Op::WsmanEnumerate | Op::WsmanEnumerateWithEpr => {
                            format!("{} by {}", op.name(), load.max_objects)
                        }
                        _ => op.name().to_string(),
                    };
                    println!(
                        "| {label} | {class} | {} | {operation} | {c} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {} | {ratio} |",
                        op.protocol(),
                        m.rate(),
                        stats::percentile(&m.latencies_us, 0.50),
                        stats::percentile(&m.latencies_us, 0.99),
                        m.instances_per_unit(),
                        m.kib_per_unit(),
                        figure(m.cpu_us_per_unit(), 0),
                        figure(per_instance, 1),
                    );
                }
            }
        }
    }
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
        Command::Compare(args) => compare(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cimload: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
