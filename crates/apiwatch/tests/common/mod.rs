//! Helpers for the end-to-end tests: the real `apiwatch` binary, a real upstream, raw HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_apiwatch");

/// A real upstream on 127.0.0.1, running on its own runtime for the test's lifetime.
pub struct Upstream {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

pub fn start_upstream() -> Upstream {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = runtime.block_on(apiwatch_testkit::start_upstream());
    Upstream {
        addr,
        _runtime: runtime,
    }
}

/// A running `apiwatch serve`.
pub struct Apiwatch {
    pub child: Child,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

/// Starts `apiwatch serve` on ephemeral ports and waits until it listens.
pub fn serve(data: &Path, upstream: SocketAddr, extra: &[&str]) -> Apiwatch {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--upstream", &format!("http://{upstream}")])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("APIWATCH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start apiwatch");
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_pipe = child.stderr.take().unwrap();
    let stderr_sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            let mut all = stderr_sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening ") {
                let _ = sender.send(line);
            }
        }
    });
    let Ok(line) = receiver.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!(
            "apiwatch did not start; stderr:\n{}",
            stderr.lock().unwrap()
        );
    };
    let address = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(key))
            .unwrap()
            .parse()
            .unwrap()
    };
    Apiwatch {
        gateway: address("gateway="),
        admin: address("admin="),
        child,
        stderr,
    }
}

impl Apiwatch {
    /// The admin API token printed at first start.
    pub fn token(&self) -> String {
        let stderr = self.stderr();
        stderr
            .split_whitespace()
            .find(|word| word.starts_with("aw_"))
            .unwrap_or_else(|| panic!("no token printed; stderr:\n{stderr}"))
            .to_owned()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!(
            "apiwatch did not stop on SIGTERM; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Apiwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an apiwatch command to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("failed to run apiwatch")
}

/// Runs apiwatch, which must succeed (else the test fails with its stderr); its stdout.
#[allow(dead_code)] // not every test binary uses it
pub fn run_ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "apiwatch {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_of(&output)
}

/// Runs apiwatch, which must refuse with exit code 2 (a usage error) and say `said` on
/// stderr (else the test fails with both); its output.
#[allow(dead_code)] // not every test binary uses it
pub fn run_refused(args: &[&str], said: &str) -> Output {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "apiwatch {args:?}: {stderr}");
    assert!(stderr.contains(said), "apiwatch {args:?}: {stderr}");
    output
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A response read from a raw HTTP/1.1 exchange.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Sends raw bytes (any bytes at all) and reads the response until the server closes.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    RawResponse {
        status,
        head,
        body: response[split + 4..].to_vec(),
    }
}

/// `GET path` with extra header lines, `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw_request(addr, request.as_bytes())
}

/// `POST path` with a body.
pub fn post(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> RawResponse {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_request(addr, request.as_bytes())
}

/// Every event in the journal, via `apiwatch tail` (the CLI path a user takes).
pub fn journal_events(data: &Path) -> Vec<serde_json::Value> {
    let output = run(&["tail", "-n", "1000000", "--data", data.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "tail failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_of(&output)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("record is not one JSON object ({err}): {line}"))
        })
        .collect()
}

/// Every file under `dir`, recursively, as (path, bytes).
pub fn all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Polls `check` every 100 ms until it gives a value; after `within`, fails with the message
/// `failure` builds then (so it can show what was seen by that time).
pub fn poll<T>(
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
    failure: impl Fn() -> String,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(started.elapsed() < within, "{}", failure());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` as if from `client` (a gateway started with `--trusted-proxy 127.0.0.1/32`
/// takes the client address from `X-Forwarded-For`); returns the status.
pub fn get_as(gateway: SocketAddr, client: &str, path: &str, extra: &[(&str, &str)]) -> u16 {
    let mut headers = vec![("x-forwarded-for", client)];
    headers.extend_from_slice(extra);
    get(gateway, path, &headers).status
}

/// Writes `toml` as `apiwatch.toml` in `dir`; returns its path.
pub fn write_config(dir: &Path, toml: impl AsRef<str>) -> std::path::PathBuf {
    let config = dir.join("apiwatch.toml");
    std::fs::write(&config, toml.as_ref()).unwrap();
    config
}

/// `apiwatch serve` on its defaults, trusting 127.0.0.1 as a proxy so a test picks the client
/// address with `X-Forwarded-For`.
pub fn serve_trusting_loopback(data: &Path, upstream: SocketAddr) -> Apiwatch {
    serve(data, upstream, &["--trusted-proxy", "127.0.0.1/32"])
}

/// The configuration lines of one webhook receiver named `hook` at `http://ADDR/hook`.
pub fn webhook_receiver(addr: SocketAddr) -> String {
    format!(
        "[[alerts.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\n"
    )
}

/// `apiwatch serve` with `config`, trusting 127.0.0.1 as a proxy so a test picks the client
/// address with `X-Forwarded-For`.
pub fn serve_configured(data: &Path, upstream: SocketAddr, config: &Path) -> Apiwatch {
    serve(
        data,
        upstream,
        &[
            "--config",
            config.to_str().unwrap(),
            "--trusted-proxy",
            "127.0.0.1/32",
        ],
    )
}

/// A basic-auth login as `admin` with `password`, from `client`; returns the status.
pub fn login_as(gateway: SocketAddr, client: &str, password: &str) -> u16 {
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
    get(
        gateway,
        "/login",
        &[
            ("x-forwarded-for", client),
            ("authorization", &format!("Basic {credentials}")),
        ],
    )
    .status
}

/// Fifteen wrong passwords for `admin` from `client`: the built-in brute-force rule fires.
pub fn brute_force(gateway: SocketAddr, client: &str) {
    for attempt in 0..15 {
        let status = login_as(gateway, client, &format!("guess{attempt}"));
        assert!(status == 401 || status == 403, "{status}");
    }
}

/// Recording HTTP receivers (webhooks), on a runtime of their own.
pub struct Recorders {
    _runtime: tokio::runtime::Runtime,
    pub list: Vec<apiwatch_testkit::Recorder>,
}

pub fn recorders(count: usize) -> Recorders {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let list = (0..count)
        .map(|_| runtime.block_on(apiwatch_testkit::start_recorder()))
        .collect();
    Recorders {
        _runtime: runtime,
        list,
    }
}
