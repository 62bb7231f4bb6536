//! Running a shell script in a process group of its own, so a test can see whether anything
//! it started in the background is still running after it exits, and kill whatever is.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A process group started by [`output_of_group_within`]; its members are killed when it is
/// dropped (also when the test panics), so a failed script never leaves a server behind.
struct GroupRun {
    pgid: u32,
}

/// Runs `command` as the leader of a new process group and waits for it to exit, draining
/// its output; returns the output like `Command::output`. Panics, after killing the whole
/// group, past `limit` or when any member of the group is still running once the leader has
/// exited (a script that leaves a server behind).
pub fn output_of_group_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let group = GroupRun { pgid: child.id() };
    // Drain both pipes meanwhile, so a chatty process never blocks on a full pipe. A
    // background member keeps the pipes open; the readers are joined only once the group
    // is empty, which the guard makes sure of.
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the process") {
            break status;
        }
        if Instant::now() > deadline {
            group.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let leftovers = group.members();
    // Whatever is left holds the pipes open: kill it before reading to the end.
    group.kill();
    let output = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        leftovers.is_empty(),
        "processes still running after the script exited ({status}): {leftovers:?}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl GroupRun {
    /// The live processes of the group (pid and command name), from `/proc`.
    fn members(&self) -> Vec<(u32, String)> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
                let (head, rest) = stat.rsplit_once(')')?;
                let name = head.split_once('(')?.1.to_string();
                let mut fields = rest.split_whitespace();
                let state = fields.next()?;
                let pgrp: u32 = fields.nth(1)?.parse().ok()?;
                // A zombie has exited; only its parent's wait is missing.
                (pgrp == self.pgid && state != "Z").then_some((pid, name))
            })
            .collect()
    }

    fn kill(&self) {
        if !self.members().is_empty() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pgid)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for GroupRun {
    fn drop(&mut self) {
        self.kill();
    }
}
