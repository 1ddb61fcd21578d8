//! `cimvirtd mof compile` and `cimvirtd mof print`.

use std::path::PathBuf;
use std::process::ExitCode;

use cim_schema::mof::{writer, Compiler, Diagnostic};
use cim_schema::Repository;
use clap::{Args, Subcommand};

/// Namespace that MOF files compile into unless they say otherwise.
const DEFAULT_NAMESPACE: &str = "root/cimv2";

#[derive(Debug, Subcommand)]
pub enum MofCommand {
    /// Compile MOF files into a scratch repository and report what they define.
    ///
    /// Prints one line ending in "N classes, M qualifier declarations, K instances" and exits
    /// with 0, or prints every error (file:line:column, the line, a caret) and exits with 1.
    Compile {
        #[command(flatten)]
        input: Input,
    },
    /// Print one class, with everything it inherits, as MOF.
    Print {
        /// The class to print.
        class: String,
        #[command(flatten)]
        input: Input,
        /// Print only what the class itself declares.
        #[arg(long)]
        declared: bool,
    },
}

#[derive(Debug, Args)]
pub struct Input {
    /// Directory searched for `#pragma include` files after the including file's own.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    include_dirs: Vec<PathBuf>,
    /// Namespace for declarations before any `#pragma namespace`.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// MOF files, compiled in order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(cmd: MofCommand) -> ExitCode {
    match cmd {
        MofCommand::Compile { input } => match compile(&input) {
            Ok((repo, line)) => {
                println!("{line}");
                // The process ends here: freeing a large schema piece by piece would only
                // add time.
                std::mem::forget(repo);
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        MofCommand::Print {
            class,
            input,
            declared,
        } => {
            let (repo, _) = match compile(&input) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let found = repo
                .namespaces()
                .find_map(|ns| ns.class(&class).map(|c| (ns, c)));
            let Some((ns, c)) = found else {
                eprintln!("error: class '{class}' is not defined by the given files");
                return ExitCode::FAILURE;
            };
            let form = if declared {
                writer::ClassForm::Declared
            } else {
                writer::ClassForm::Resolved
            };
            print!("{}", writer::class(c, ns, form));
            ExitCode::SUCCESS
        }
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    if !diagnostics.is_empty() {
        eprintln!("{}", cim_schema::mof::render(diagnostics));
    }
}

/// Compiles the input; on success returns the repository and the summary line.
fn compile(input: &Input) -> Result<(Repository, String), ExitCode> {
    let mut repo = Repository::new();
    let mut compiler = Compiler::new(&mut repo, &input.namespace);
    for dir in &input.include_dirs {
        compiler.include_dir(dir);
    }
    match compiler.compile_files(&input.files) {
        Ok((summary, warnings)) => {
            print_diagnostics(&warnings);
            let files = input.files.len();
            let noun = if files == 1 { "file" } else { "files" };
            Ok((repo, format!("compiled {files} {noun}: {summary}")))
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!("{errors} error{} found", if errors == 1 { "" } else { "s" });
            Err(ExitCode::FAILURE)
        }
    }
}
