//! Child processes, log capture, free ports and readiness polling.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Directory holding every child's stdout/stderr. When dropped while the
/// thread is panicking (a failing test), it prints the tail of every log and
/// keeps the directory for inspection.
pub struct Logs {
    dir: Option<tempfile::TempDir>,
    files: Mutex<Vec<(String, PathBuf)>>,
}

impl Logs {
    pub fn new() -> Arc<Logs> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-it-")
            .tempdir()
            .expect("create temp dir");
        Arc::new(Logs {
            dir: Some(dir),
            files: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("log dir").path()
    }

    /// Creates `<dir>/<name>` and registers it for the failure dump.
    pub fn file(&self, name: &str) -> (File, PathBuf) {
        let path = self.path().join(name);
        let f = File::create(&path).expect("create log file");
        self.files.lock().unwrap().push((name.to_string(), path.clone()));
        (f, path)
    }

    pub fn dump(&self) {
        let files = self.files.lock().map(|f| f.clone()).unwrap_or_default();
        eprintln!("===== child process logs (in {}) =====", self.path().display());
        for (name, path) in files {
            eprintln!("----- {name} (last 60 lines) -----");
            eprintln!("{}", tail(&path, 60));
        }
        eprintln!("===== end of child process logs =====");
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("(logs kept in {})", kept.display());
            }
        }
    }
}

/// Last `n` lines of a file (at most the last 64 KiB are read).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("<missing>");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process that is killed when dropped (also on panic). On Linux the
/// child additionally gets SIGKILL if the spawning thread dies, so an aborted
/// test run does not leave orphans behind.
pub struct ChildGuard {
    pub name: String,
    child: Option<Child>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout/stderr captured to `<name>.stdout.log` /
    /// `<name>.stderr.log` in `logs`. Stdin is a pipe kept open for the
    /// child's lifetime (the IdP exits when it closes).
    pub fn spawn(name: &str, mut cmd: Command, logs: &Logs) -> ChildGuard {
        let (out, stdout_path) = logs.file(&format!("{name}.stdout.log"));
        let (err, stderr_path) = logs.file(&format!("{name}.stderr.log"));
        cmd.stdin(Stdio::piped()).stdout(out).stderr(err);
        Self::spawn_configured(name, cmd, stdout_path, stderr_path)
    }

    /// Like `spawn` but stdout is a pipe returned to the caller, whose copy
    /// goes to the log by a helper thread after `first_line` is read.
    pub fn spawn_with_first_line(name: &str, mut cmd: Command, logs: &Logs, timeout: Duration) -> (ChildGuard, String) {
        let (mut out_log, stdout_path) = logs.file(&format!("{name}.stdout.log"));
        let (err, stderr_path) = logs.file(&format!("{name}.stderr.log"));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        let mut guard = Self::spawn_configured(name, cmd, stdout_path, stderr_path);
        let stdout = guard
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            if reader.read_line(&mut first).unwrap_or(0) > 0 {
                use std::io::Write;
                let _ = out_log.write_all(first.as_bytes());
                let _ = tx.send(first);
            }
            let _ = std::io::copy(&mut reader, &mut out_log);
        });
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => return (guard, line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(st) = guard.try_wait() {
                        panic!(
                            "{name} exited with {st} before printing its first line; stderr:\n{}",
                            tail(&guard.stderr_path, 40)
                        );
                    }
                    if Instant::now() > deadline {
                        panic!("{name} printed nothing within {timeout:?}");
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let st = guard.wait_timeout(Duration::from_secs(2));
                    panic!(
                        "{name} closed stdout before its first line (exit {st:?}); stderr:\n{}",
                        tail(&guard.stderr_path, 40)
                    );
                }
            }
        }
    }

    fn spawn_configured(name: &str, mut cmd: Command, stdout_path: PathBuf, stderr_path: PathBuf) -> ChildGuard {
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
            stdout_path,
            stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls for exit until `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, ...) with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn logs_tail(&self, n: usize) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            tail(&self.stdout_path, n),
            self.name,
            tail(&self.stderr_path, n)
        )
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits until the child's stdout (its JSON log) contains `needle`;
    /// panics after `timeout`, naming `what`.
    pub fn await_stdout(&self, what: &str, needle: &str, timeout: Duration) {
        wait_until(what, timeout, Duration::from_millis(20), || {
            if self.stdout().contains(needle) {
                Ok(())
            } else {
                Err(format!("no {needle:?} in its log yet"))
            }
        })
    }

    /// Polls `ready` until it succeeds (`true`), or until the child exits
    /// first (`false`: the caller reads its logs, e.g. for a port taken
    /// meanwhile, and starts another). Panics after `timeout`.
    pub fn wait_up(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<(), String>) -> bool {
        wait_until(what, timeout, super::POLL, || {
            if self.try_wait().is_some() {
                return Ok(false);
            }
            ready().map(|()| true)
        })
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// A loopback port that was free a moment ago and has not been handed out
/// before by this process.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `probe` every `every` until it returns `Ok`, or panics after
/// `timeout` with the last error.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}: {e}");
                }
            }
        }
        std::thread::sleep(every);
    }
}
