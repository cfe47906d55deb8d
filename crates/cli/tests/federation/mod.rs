//! Running a federation as users do, for the distributed tests: `engine coordinator` and one
//! `engine agent` per node of the shipped workflow as OS processes against a real
//! nats-server, each killable and restartable. The binary is `super::common::binary()`, so
//! an author crate's tests run their own engine the same way (`examples/skin-lesion`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::common::repo;
use super::nats::NatsServer;

/// A long-running `engine` process (coordinator or agent), killed on drop.
pub struct Daemon {
    child: Child,
    pub name: String,
    log: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `engine ARGS` and waits until it prints its `ready` line.
    pub fn start(name: &str, args: &[&str], dir: &Path) -> Self {
        Self::start_with(name, args, dir, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables (a crash point).
    pub fn start_with(name: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(super::common::binary())
            .args(args)
            .current_dir(repo())
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("FEDENGINE_CRASH_AT")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("engine starts");
        let stderr = child.stderr.take().expect("stderr");
        let (ready, wait) = mpsc::channel();
        let path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("daemon log");
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if line.contains("ready on")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        let daemon = Self {
            child,
            name: name.to_owned(),
            log,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            dir: dir.to_path_buf(),
        };
        if wait.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!("{} is not ready after 30 s:\n{}", name, daemon.output());
        }
        daemon
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most `limit`) until the process exited; whether it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Starts it again with the same arguments plus `extra` and no crash point.
    pub fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        let fresh = Self::start(&self.name, &args, &self.dir);
        // The old process is gone; dropping its handle only tries to kill it again.
        drop(std::mem::replace(self, fresh));
    }
}

/// The shipped digits FedAvg workflow with its paths made absolute, `max_rounds` replaced
/// when given, and its output in `out`.
pub fn shipped_workflow(dir: &Path, file: &str, out: &Path, max_rounds: Option<u32>) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("workflows/fedavg.yaml")).expect("workflow");
    let root = repo();
    let mut text = text
        .replace("../models/", &format!("{}/models/", root.display()))
        .replace("../datasets/", &format!("{}/datasets/", root.display()))
        .replace(
            "output: ../runs/digits-fedavg",
            &format!("output: {}", out.display()),
        );
    if let Some(rounds) = max_rounds {
        text = text.replace("max_rounds: 20", &format!("max_rounds: {rounds}"));
    }
    let path = dir.join(file);
    std::fs::write(&path, text).expect("workflow written");
    path
}

/// `--user U --password P` for `user` when the federation runs with credentials.
pub fn login(credentials: bool, user: &str) -> Vec<String> {
    if credentials {
        vec![
            "--user".into(),
            user.into(),
            "--password".into(),
            format!("pw-{user}"),
        ]
    } else {
        Vec::new()
    }
}

/// The coordinator and an agent per node of the shipped workflow; with `credentials`, each
/// logs in as its own user (see [`deployment_config`]).
pub fn start_federation(server: &NatsServer, dir: &Path, credentials: bool) -> Vec<Daemon> {
    start_federation_with(server, dir, credentials, &[])
}

/// Like [`start_federation`], with extra environment variables for some processes
/// (`(process name, variable, value)`: a crash point for one of them).
pub fn start_federation_with(
    server: &NatsServer,
    dir: &Path,
    credentials: bool,
    env: &[(&str, &str, &str)],
) -> Vec<Daemon> {
    let env_of = |name: &str| -> Vec<(&str, &str)> {
        env.iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, k, v)| (*k, *v))
            .collect()
    };
    let url = server.url();
    let coordinator_dir = dir.join("coordinator");
    let mut args: Vec<String> = vec![
        "coordinator".into(),
        "--nats".into(),
        url.clone(),
        "--work-dir".into(),
        coordinator_dir.display().to_string(),
    ];
    args.extend(login(credentials, "coordinator"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemons = vec![Daemon::start_with(
        "coordinator",
        &args,
        dir,
        &env_of("coordinator"),
    )];
    let data = repo().join("datasets/digits");
    for (node, data_dir) in [
        ("initiator", "initiator"),
        ("site-1", "site-1"),
        ("site-2", "site-2"),
        ("site-3", "site-3"),
    ] {
        let registered = format!("digits-{data_dir}={}", data.join(data_dir).display());
        let work = dir.join(format!("agent-{node}"));
        let mut args: Vec<String> = [
            "agent",
            "--nats",
            &url,
            "--node",
            node,
            "--data",
            &registered,
            "--work-dir",
            work.to_str().expect("utf-8"),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(login(credentials, node));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        daemons.push(Daemon::start_with(node, &args, dir, &env_of(node)));
    }
    daemons
}

pub fn engine(args: &[&str]) -> Output {
    super::common::engine(args)
}

pub fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn logs(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("--- {} ---\n{}", d.name, d.output()))
        .collect()
}

/// The task id that `engine submit` printed.
pub fn task_id(output: &Output) -> String {
    let all = text(output);
    all.split("submitted as task `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no task id in the output:\n{all}"))
        .to_owned()
}

/// The shipped workflow run embedded (its weights are what a distributed run must give) and
/// a copy of it for the distributed run, both under `dir`.
pub struct Reference {
    /// `model.safetensors` of the embedded run.
    pub expected: Vec<u8>,
    /// The workflow copy to submit over NATS.
    pub remote: PathBuf,
    /// Its output directory.
    pub remote_out: PathBuf,
}

/// Runs the shipped workflow (with `max_rounds` replaced when given) embedded under `dir`.
pub fn embedded_reference(dir: &Path, max_rounds: Option<u32>) -> Reference {
    let embedded_out = dir.join("embedded");
    let remote_out = dir.join("remote");
    let embedded = shipped_workflow(dir, "embedded.yaml", &embedded_out, max_rounds);
    let remote = shipped_workflow(dir, "remote.yaml", &remote_out, max_rounds);
    let run = engine(&["submit", "--quiet", embedded.to_str().expect("utf-8")]);
    assert!(run.status.success(), "embedded run:\n{}", text(&run));
    Reference {
        expected: super::common::zip_entry(&embedded_out.join("model.zip"), "model.safetensors"),
        remote,
        remote_out,
    }
}

impl Reference {
    /// Asserts that the distributed run ended with the embedded run's weights, bit for bit.
    pub fn assert_same_weights(&self, why: &str) {
        assert!(
            super::common::zip_entry(&self.remote_out.join("model.zip"), "model.safetensors")
                == self.expected,
            "{why}: the distributed run's weights differ from the embedded run's"
        );
    }
}
