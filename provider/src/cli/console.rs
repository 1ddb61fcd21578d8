//! `cimvirtd console`: a VM's serial console in this terminal, over the server's WebSocket
//! (`/console/NAME`), as a terminal emulator would: raw mode, every key to the guest,
//! Ctrl-] to leave.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::Args;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::header::{HeaderValue, AUTHORIZATION};
use rustix::termios::{self, OptionalActions, Termios};
use tokio::io::AsyncReadExt as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use cimom::http::client::{Client, Url};
use provider::config::default_data_dir;

/// The byte that leaves the console: Ctrl-] (as telnet and virsh console have it).
const ESCAPE: u8 = 0x1d;

/// Options of `console`.
#[derive(Debug, Args)]
pub struct ConsoleCommand {
    /// The VM (not needed with --url, which names it).
    #[arg(value_name = "VM")]
    vm: Option<String>,
    /// The console's URL as CIM gives it (a KVM_RemoteServiceAccessPoint's AccessInfo:
    /// wss://HOST:PORT/console/NAME or ws://...).
    #[arg(long, value_name = "URL", conflicts_with = "server")]
    url: Option<String>,
    /// The server, HOST or HOST:PORT (HTTPS; port 5989 unless given) [default: this host,
    /// localhost:5989].
    #[arg(long, value_name = "HOST[:PORT]")]
    server: Option<String>,
    /// The user name.
    #[arg(long, default_value = "admin")]
    user: String,
    /// A file whose first line is the password [default: asked for on the terminal].
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the server's [default: the certificate the
    /// server on this host generated, DATA_DIR/tls/cert.pem].
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// The data directory of the server on this host, for its certificate.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs the console until the user leaves or the server ends the session.
pub fn run(cmd: ConsoleCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(console(cmd)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cimvirtd console: {message}");
    ExitCode::FAILURE
}

/// The console URL the options name.
fn console_url(cmd: &ConsoleCommand) -> Result<String, String> {
    if let Some(url) = &cmd.url {
        return Ok(url.clone());
    }
    let vm = cmd
        .vm
        .as_deref()
        .ok_or("name the VM, or give the console's --url")?;
    let server = cmd.server.as_deref().unwrap_or("localhost");
    let authority = if server.contains(':') && !server.ends_with(']') {
        server.to_owned()
    } else {
        format!("{server}:5989")
    };
    let path: String =
        percent_encoding::utf8_percent_encode(vm, percent_encoding::NON_ALPHANUMERIC).collect();
    Ok(format!("wss://{authority}/console/{path}"))
}

fn password(cmd: &ConsoleCommand) -> Result<String, String> {
    if let Some(path) = &cmd.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask the password on: give --password-file".into());
    }
    eprint!("password for {}: ", cmd.user);
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).map_err(|e| format!("terminal: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(termios::LocalModes::ECHO);
    termios::tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| format!("terminal: {e}"))?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = termios::tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The certificates a wss:// server is checked against.
fn trust(cmd: &ConsoleCommand) -> Result<Vec<PathBuf>, String> {
    if let Some(ca) = &cmd.ca_cert {
        return Ok(vec![ca.clone()]);
    }
    let own = cmd
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir)
        .join("tls/cert.pem");
    if own.exists() {
        Ok(vec![own])
    } else {
        Err(format!(
            "no certificate to check the server's against: give --ca-cert (or --data-dir of the \
             server on this host; {} does not exist)",
            own.display()
        ))
    }
}

/// Puts the terminal in raw mode while it lives.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode, String> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).map_err(|e| format!("terminal: {e}"))?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .map_err(|e| format!("terminal: {e}"))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// A message for the person, on the terminal beside the guest's output.
fn notice(text: &str) {
    eprint!("\r\n[cimvirtd console: {text}]\r\n");
}

async fn console(cmd: ConsoleCommand) -> Result<ExitCode, String> {
    let url_text = console_url(&cmd)?;
    let url = Url::parse(&url_text).map_err(|e| e.to_string())?;
    let secure = url_text.to_ascii_lowercase().starts_with("wss:");
    let password = password(&cmd)?;
    let trusted = if secure { trust(&cmd)? } else { Vec::new() };
    let client = Client::new(&trusted).map_err(|e| e.to_string())?;
    let transport = client.open(&url).await.map_err(|e| e.to_string())?;
    let mut request = url_text
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url_text}: {e}"))?;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", cmd.user));
    request.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|e| e.to_string())?,
    );
    let (socket, _) = match tokio_tungstenite::client_async(request, transport).await {
        Ok(done) => done,
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                .unwrap_or_default();
            return Err(format!("{url_text}: {} {body}", response.status()));
        }
        Err(e) => return Err(format!("{url_text}: {e}")),
    };
    let interactive = std::io::stdin().is_terminal();
    let _raw = if interactive {
        Some(RawMode::enter()?)
    } else {
        None
    };
    notice(&format!(
        "connected to {url_text}; {}",
        if interactive {
            "Ctrl-] leaves"
        } else {
            "input from standard input"
        }
    ));
    let (mut sink, mut stream) = socket.split();
    let mut stdin = tokio::io::stdin();
    let mut input = [0u8; 4096];
    let mut stdin_open = true;
    loop {
        tokio::select! {
            read = stdin.read(&mut input), if stdin_open => {
                let n = match read {
                    Ok(0) | Err(_) => { stdin_open = false; continue }
                    Ok(n) => n,
                };
                let typed = &input[..n];
                let (keys, leave) = match typed.iter().position(|&b| b == ESCAPE && interactive) {
                    Some(at) => (&typed[..at], true),
                    None => (typed, false),
                };
                if !keys.is_empty() && sink.send(Message::binary(keys.to_vec())).await.is_err() {
                    notice("the connection is gone");
                    return Ok(ExitCode::FAILURE);
                }
                if leave {
                    let _ = sink.close().await;
                    notice("left the console");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
                Some(Ok(Message::Text(text))) => notice(text.as_str()),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (f.code, f.reason.to_string()))
                        .unwrap_or((CloseCode::Normal, String::new()));
                    notice(&format!("the server closed the console: {reason}"));
                    return Ok(if code == CloseCode::Normal { ExitCode::SUCCESS } else { ExitCode::from(3) });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    notice(&format!("the connection failed: {e}"));
                    return Ok(ExitCode::FAILURE);
                }
                None => {
                    notice("the connection closed");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(vm: Option<&str>, server: Option<&str>, url: Option<&str>) -> ConsoleCommand {
        ConsoleCommand {
            vm: vm.map(str::to_owned),
            url: url.map(str::to_owned),
            server: server.map(str::to_owned),
            user: "admin".into(),
            password_file: None,
            ca_cert: None,
            data_dir: None,
        }
    }

    #[test]
    fn the_url_comes_from_the_server_and_the_vm_or_is_given_whole() {
        assert_eq!(
            console_url(&command(Some("web 1"), None, None)).unwrap(),
            "wss://localhost:5989/console/web%201"
        );
        assert_eq!(
            console_url(&command(Some("a"), Some("h.example:6000"), None)).unwrap(),
            "wss://h.example:6000/console/a"
        );
        assert_eq!(
            console_url(&command(Some("a"), Some("[::1]"), None)).unwrap(),
            "wss://[::1]:5989/console/a"
        );
        assert_eq!(
            console_url(&command(None, None, Some("ws://127.0.0.1:5988/console/a"))).unwrap(),
            "ws://127.0.0.1:5988/console/a"
        );
        assert!(console_url(&command(None, None, None)).is_err());
    }
}
