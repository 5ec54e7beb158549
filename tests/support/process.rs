//! A child process whose stdout and stderr lines are collected while it runs: killed and
//! waited for when dropped, its last log lines printed when the test fails. The Prometheus
//! launcher (`support::prometheus`) and the federation test's `promfed serve` run in one.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child process and its log (stdout and stderr, line by line, as they come).
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

fn collect_lines(pipe: impl std::io::Read + Send + 'static, log: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push(line);
        }
    });
}

impl Process {
    /// Start `command` (stdin closed, stdout and stderr collected); `name` is for messages.
    pub fn spawn(name: &str, command: &mut Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().expect("stdout"), log.clone());
        collect_lines(child.stderr.take().expect("stderr"), log.clone());
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(lines)..].join("\n")
    }

    /// The first log line `found` accepts; `Err` when the process exits first or `within`
    /// passes, with the log's last lines.
    pub fn try_wait_for_line<T>(
        &mut self,
        within: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(hit) = self.log.lock().unwrap().iter().find_map(|l| found(l)) {
                return Ok(hit);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(60)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not ready after {within:?}:\n{}",
                    self.name,
                    self.log_tail(60)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Process::try_wait_for_line`], failing the test on `Err`.
    pub fn wait_for_line<T>(&mut self, within: Duration, found: impl Fn(&str) -> Option<T>) -> T {
        self.try_wait_for_line(within, found)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kill the process and wait for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- last log lines of {}:\n{}",
                self.name,
                self.log_tail(25)
            );
        }
    }
}
