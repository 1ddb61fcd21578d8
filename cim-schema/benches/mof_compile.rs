//! Compiles the full DMTF CIM Schema 2.49 and prints the time beside pywbem 1.9's MOF
//! compiler on the same files, in the same run.
//!
//! `cargo bench -p cim-schema --bench mof_compile` (environment: `CIMVIRT_PYTHON`, the
//! Python with pywbem, default `.venv/bin/python`; `RUNS`, default 10 for cimvirt and 3 for
//! pywbem).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use cim_schema::mof::Compiler;
use cim_schema::Repository;

fn main() -> ExitCode {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let zip_path = root_dir.join("../shared/dmtf/cim_schema_2.49.0Final-MOFs.zip");
    let dir = tempfile::tempdir().expect("temp dir");
    let file =
        std::fs::File::open(&zip_path).unwrap_or_else(|e| panic!("{}: {e}", zip_path.display()));
    zip::ZipArchive::new(file)
        .and_then(|mut z| z.extract(dir.path()))
        .expect("unzip DMTF schema");
    let mof = dir.path().join("cim_schema_2.49.0.mof");
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);

    let mut ours = Vec::new();
    let mut counts = (0, 0);
    for _ in 0..runs {
        let mut repo = Repository::new();
        let start = Instant::now();
        let (summary, _) = Compiler::new(&mut repo, "root/cimv2")
            .compile_files(&[&mof])
            .expect("DMTF compiles");
        ours.push(start.elapsed());
        counts = (summary.classes, summary.qualifiers);
        // Dropping is not part of compiling; keep it out of the timed region.
        drop(repo);
    }

    let python = std::env::var_os("CIMVIRT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root_dir.join(".venv/bin/python"));
    let peer_runs = runs.clamp(1, 3);
    let peer = Command::new(&python)
        .arg(root_dir.join("tools/pywbem_compile.py"))
        .arg(&mof)
        .arg(peer_runs.to_string())
        .output();
    let (theirs, peer_counts) = match peer {
        Ok(out) if out.status.success() => parse_peer(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            eprintln!(
                "pywbem run failed ({}):\n{}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "cannot run {}: {e} (set CIMVIRT_PYTHON to a Python with pywbem 1.9)",
                python.display()
            );
            return ExitCode::FAILURE;
        }
    };

    let (our_min, our_median) = stats(&mut ours);
    let (their_min, their_median) = stats(&mut theirs.clone());
    println!("Compile DMTF CIM Schema 2.49 Final (9.5 MB, 1633 files) into a fresh repository");
    println!();
    println!("| compiler                      | runs | classes | qualifiers |   min (ms) | median (ms) |");
    println!("|-------------------------------|-----:|--------:|-----------:|-----------:|------------:|");
    println!(
        "| cimvirt cim_schema::mof       | {:>4} | {:>7} | {:>10} | {:>10.1} | {:>11.1} |",
        runs,
        counts.0,
        counts.1,
        ms(our_min),
        ms(our_median)
    );
    println!(
        "| pywbem 1.9 MOFCompiler (mock) | {:>4} | {:>7} | {:>10} | {:>10.1} | {:>11.1} |",
        theirs.len(),
        peer_counts.0,
        peer_counts.1,
        ms(their_min),
        ms(their_median)
    );
    println!();
    println!(
        "speed-up (median): {:.0}x",
        their_median.as_secs_f64() / our_median.as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn parse_peer(stdout: &str) -> (Vec<Duration>, (usize, usize)) {
    let mut times = Vec::new();
    let mut counts = (0, 0);
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [secs, classes, quals] = f[..] {
            times.push(Duration::from_secs_f64(secs.parse().expect("seconds")));
            counts = (
                classes.parse().expect("classes"),
                quals.parse().expect("qualifiers"),
            );
        }
    }
    assert!(!times.is_empty(), "pywbem printed no timings: {stdout}");
    (times, counts)
}

fn stats(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[0], times[times.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
