//! `cimvirtd user`: managing the users of a data directory (while the server is stopped:
//! the database admits one process at a time).

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use cimom::auth::{self, Access, HashSettings, Right, MIN_PASSWORD_CHARS};
use cimom::store::Store;
use provider::config::{default_data_dir, Config};

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or replace one; the password is read from the first line of stdin.
    Add(AddArgs),
    /// Delete a user.
    Del {
        /// The user name.
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// List users and their rights.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
}

/// Where the users are: the data directory, given or from the server's configuration.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The server's configuration file: its `data_dir`, and `[auth.argon2]` for new
    /// password hashes.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory [default: the configuration's, else /var/lib/cimvirt as root,
    /// else ~/.local/share/cimvirt].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    fn config(&self) -> Result<Config, String> {
        match &self.config {
            Some(path) => Config::load(path).map_err(|e| e.to_string()),
            None => Ok(Config::default()),
        }
    }
}

/// Access levels on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccessArg {
    /// Read operations only.
    ReadOnly,
    /// Everything.
    ReadWrite,
}

/// Options of `user add`.
#[derive(Debug, Args)]
#[command(after_help = format!(
    "The password is read from the first line of stdin: at least {MIN_PASSWORD_CHARS} characters."
))]
pub struct AddArgs {
    /// The user name.
    name: String,
    /// The access granted: read-only unless read-write is asked for.
    #[arg(long, value_enum, default_value = "read-only")]
    access: AccessArg,
    /// Limit the access to these namespaces (repeatable) [default: all].
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    #[command(flatten)]
    dir: DataDir,
}

fn open(dir: &DataDir) -> Result<Store, String> {
    let config = dir.config()?;
    let dir = dir
        .data_dir
        .clone()
        .or(config.data_dir)
        .unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("cimvirt.redb");
    Store::open(&path)
        .map_err(|e| format!("cannot open {}: {e} (stop cimvirtd first)", path.display()))
}

/// Runs a `user` subcommand.
pub fn run(cmd: UserCommand) -> ExitCode {
    match execute(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cimvirtd user: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cmd: UserCommand) -> Result<(), String> {
    match cmd {
        UserCommand::Add(args) => {
            let hashing: HashSettings = args.dir.config()?.auth.argon2;
            hashing.validate().map_err(|e| e.to_string())?;
            let store = open(&args.dir)?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .map_err(|e| format!("reading the password from stdin: {e}"))?;
            let password = password.trim_end_matches(['\r', '\n']);
            let access = match args.access {
                AccessArg::ReadOnly => Access::ReadOnly,
                AccessArg::ReadWrite => Access::ReadWrite,
            };
            let namespaces = if args.namespaces.is_empty() {
                vec!["*".to_string()]
            } else {
                args.namespaces
            };
            let rights = namespaces
                .into_iter()
                .map(|namespace| Right { namespace, access })
                .collect();
            let user = auth::put_user(&store, &args.name, password, rights, &hashing)
                .map_err(|e| e.to_string())?;
            println!(
                "user {} saved: {}",
                user.name,
                describe_rights(&user.rights)
            );
        }
        UserCommand::Del { name, dir } => {
            let store = open(&dir)?;
            if !store.delete_user(&name).map_err(|e| e.to_string())? {
                return Err(format!("no user named {name}"));
            }
            println!("user {name} deleted");
        }
        UserCommand::List { dir } => {
            let store = open(&dir)?;
            for u in auth::list_users(&store).map_err(|e| e.to_string())? {
                println!("{}\t{}", u.name, describe_rights(&u.rights));
            }
        }
    }
    Ok(())
}

/// `NS=access,...`, as `user list` shows rights.
fn describe_rights(rights: &[Right]) -> String {
    rights
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r.namespace,
                match r.access {
                    Access::ReadOnly => "read-only",
                    Access::ReadWrite => "read-write",
                }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}
