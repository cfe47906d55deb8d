//! Scale: how the coordinator's round time and peak memory grow with the number of
//! participants and the model's size. The coordinator is the real `engine coordinator`
//! process over a real nats-server; the participants are simulated agents in this process
//! (they speak the agent protocol and answer `Train` at once with an update of the global
//! weights' shapes), so what is measured is the coordinator's own work per round: broadcast,
//! collection, checks, spooling and aggregation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fl_runtime::control::{
    self, Announce, AnnounceReply, CONTROL_TASK, ClientMessage, TaskState, agent_subject,
};
use fl_runtime::{Client, NatsOptions, TaskEvent};
use fl_tensor::{Body, Decision, Envelope, Metrics, TensorSet};
use fl_torch::{ModelSpec, find_builtin, named_tensors, write_safetensors};
use fl_transport::{COORDINATOR, ControlConnection, NatsTransport, Transport};

use crate::nats::{NatsServer, server_binary};
use crate::report::{Summary, machine, today};

/// Rounds per configuration.
const ROUNDS: u32 = 5;

/// One measured configuration.
#[derive(Debug)]
struct Measured {
    participants: usize,
    model: &'static str,
    model_mib: f64,
    round_seconds: Vec<f64>,
    peak_mib: f64,
}

/// Runs the configurations and returns the BENCHMARKS.md section.
pub fn run(root: &Path) -> Result<String> {
    let engine = std::env::current_exe()?.with_file_name("engine");
    if !engine.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p fl-cli` (scripts/bench does)",
            engine.display()
        );
    }
    let server = NatsServer::start(&server_binary(root)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let resnet = resnet18_package(dir.path())?;
    let small = root.join("models/digits-cnn");
    let mut results = Vec::new();
    for (participants, model, package) in [
        (10, "SmallCnn", &small),
        (50, "SmallCnn", &small),
        (100, "SmallCnn", &small),
        (3, "ResNet-18", &resnet),
    ] {
        eprintln!("scale: {participants} participants, {model}");
        results.push(measure(
            &engine,
            &server,
            &runtime,
            dir.path(),
            participants,
            model,
            package,
        )?);
    }
    let base = Summary::of(&results[0].round_seconds).median;
    let rows: String = results
        .iter()
        .map(|m| {
            let round = Summary::of(&m.round_seconds);
            format!(
                "| {} | {} | {:.2} | {} | **{:.2}** | {:.1} | **{:.2}** |\n",
                m.participants,
                m.model,
                m.model_mib,
                round.show(3),
                round.median / base,
                m.peak_mib,
                m.peak_mib / m.model_mib
            )
        })
        .collect();
    Ok(format!(
        "## Scale (coordinator with simulated participants)\n\n\
         Command: `./scripts/bench` · date: {} · machine: {} · {ROUNDS} rounds per configuration, \
         median (min–max) over the rounds.\n\n\
         The real `engine coordinator` process and nats-server; the participants are simulated \
         agents in the benchmark process that answer `Train` at once with an update of the \
         global weights' shapes (no training), so the round time is the coordinator's own work: \
         broadcasting the weights to every participant, collecting and checking every update, \
         spooling it durably and folding it, plus the transport. Peak memory is the coordinator \
         process's peak RSS (`VmHWM`) over the whole task (a fresh process per configuration). \
         Ratios: round time against the 10-participant SmallCnn round measured in the same run, \
         and peak memory against the model's size.\n\n\
         | participants | model | model (MiB) | round (s) | round / 10-participant round | peak RSS (MiB) | peak / model |\n\
         |---|---|---|---|---|---|---|\n{rows}\n\
         Round time grows with the participants as the ratio column shows (every update is \
         decoded, checked, written durably and folded once, the weights are published to each \
         participant, and the server and the simulated agents share the machine's two cores); \
         peak memory barely grows with them, because updates are spooled to disk and folded one \
         at a time, and for the small model it is the process's baseline (libtorch, the \
         runtime). For a ResNet-18-sized model the peak is several times the model: the global \
         and best weights, one encoding per participant while the broadcast is being published, \
         the fold's f64 accumulator (twice the model) and the checkpoint's copies.\n",
        today(),
        machine(),
    ))
}

/// A package of a randomly initialised ResNet-18 (10 classes) under `dir`.
fn resnet18_package(dir: &Path) -> Result<PathBuf> {
    let package = dir.join("resnet18");
    std::fs::create_dir_all(&package)?;
    let builtin = find_builtin("fedengine.vision", "ResNet18").context("ResNet18 is registered")?;
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = (builtin.build)(
        &vs.root(),
        ModelSpec {
            in_channels: 3,
            num_classes: 10,
        },
    );
    write_safetensors(package.join("model.safetensors"), &named_tensors(&vs))?;
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits-cnn");
    let card = std::fs::read_to_string(digits.join("README.md"))?.replacen(
        "name: digits-cnn",
        "name: resnet18-bench",
        1,
    );
    std::fs::write(package.join("README.md"), card)?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(digits.join("config.json"))?)?;
    config["entry_class"] = "ResNet18".into();
    config["in_channels"] = 3.into();
    std::fs::write(
        package.join("config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    Ok(package)
}

/// The peak RSS of a process, in MiB.
fn peak_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmHWM in /proc/PID/status")?;
    Ok(kb / 1024.0)
}

/// A coordinator process, killed on drop.
struct Coordinator(Child);

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    engine: &Path,
    server: &NatsServer,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    participants: usize,
    model: &'static str,
    package: &Path,
) -> Result<Measured> {
    let work = dir.join(format!("coordinator-{participants}-{model}"));
    let mut child = Command::new(engine)
        .args(["coordinator", "--nats", &server.url(), "--work-dir"])
        .arg(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", engine.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let coordinator = Coordinator(child);
    wait_ready(stderr)?;

    // The simulated agents: the initiator and the participants.
    let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let nodes: Vec<String> = std::iter::once("initiator".to_owned())
        .chain((1..=participants).map(|i| format!("site-{i}")))
        .collect();
    let mut agents = Vec::new();
    for node in &nodes {
        let (url, node, labels) = (server.url(), node.clone(), labels.clone());
        let (ready, wait) = std::sync::mpsc::channel();
        agents.push(runtime.spawn(async move { simulated_agent(url, node, labels, ready).await }));
        wait.recv_timeout(Duration::from_secs(30))
            .context("a simulated agent did not start")??;
    }

    let workflow = dir.join(format!("scale-{participants}-{model}.yaml"));
    let mut text = format!(
        "version: 1\nname: scale-{participants}\nseed: 0\nmodel: {}\n\
         initiator:\n  node: initiator\n  validation: {{name: sim}}\n  test: {{name: sim}}\n\
         participants:\n",
        package.display()
    );
    for node in &nodes[1..] {
        text.push_str(&format!("  - node: {node}\n    data: {{name: sim}}\n"));
    }
    text.push_str(&format!(
        "max_rounds: {ROUNDS}\nearly_stopping: {{enabled: false}}\n\
         timeouts: {{schedule: 2m, calculation: 10m}}\noutput: {}\n",
        dir.join("out").display()
    ));
    std::fs::write(&workflow, text)?;
    let client = Client::connect(&NatsOptions::new(server.url(), "unset", "unset"))?;
    let mut round_seconds = Vec::new();
    let submitted = client.submit(&workflow, package, &dir.join("out"), |message| {
        if let ClientMessage::Event(TaskEvent::RoundFinished(summary)) = message {
            round_seconds.push(summary.seconds);
        }
    })?;
    if !matches!(submitted.status.state, TaskState::Finished { .. }) {
        bail!("the task did not finish: {:?}", submitted.status.state);
    }
    let peak = peak_mib(coordinator.0.id())?;
    drop(coordinator);
    for agent in agents {
        agent.abort();
    }
    let model_mib =
        std::fs::metadata(package.join("model.safetensors"))?.len() as f64 / 1024.0 / 1024.0;
    Ok(Measured {
        participants,
        model,
        model_mib,
        round_seconds,
        peak_mib: peak,
    })
}

fn wait_ready(stderr: std::process::ChildStderr) -> Result<()> {
    use std::io::BufRead as _;
    let (ready, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("ready on")
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(());
            }
        }
    });
    let started = Instant::now();
    wait.recv_timeout(Duration::from_secs(30))
        .with_context(|| format!("the coordinator is not ready after {:?}", started.elapsed()))
}

/// An agent that accepts every announcement for `node` and simulates its node.
async fn simulated_agent(
    url: String,
    node: String,
    labels: Vec<String>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let started = async {
        let control =
            ControlConnection::connect(&NatsOptions::new(url.clone(), CONTROL_TASK, node.clone()))
                .await?;
        let requests = control.serve(&agent_subject(&node)).await?;
        anyhow::Ok((control, requests))
    }
    .await;
    let (control, mut requests) = match started {
        Ok(pair) => {
            let _ = ready.send(Ok(()));
            pair
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    while let Some(request) = requests.next().await {
        let Ok(announce) = control::decode::<Announce>(&request.payload) else {
            continue;
        };
        let reply = AnnounceReply::Accepted {
            labels: announce.want_labels.then(|| labels.clone()),
        };
        control.respond(&request, control::encode(&reply)).await;
        let (url, node) = (url.clone(), node.clone());
        tokio::spawn(async move {
            if let Err(error) = simulated_node(url, node.clone(), announce.task_id).await {
                eprintln!("simulated node {node}: {error:#}");
            }
        });
    }
}

/// The metrics a simulated node reports for any evaluation.
fn fixed_metrics() -> Metrics {
    Metrics {
        loss: Some(1.0),
        accuracy: Some(0.5),
        extra: BTreeMap::new(),
    }
}

/// A node that answers at once: `Hello` to the setup, the global weights back to `Train`,
/// fixed metrics to `Decide` (deciding by the default rules) and `Finish`.
async fn simulated_node(url: String, node: String, task_id: String) -> Result<()> {
    let transport =
        NatsTransport::connect(NatsOptions::new(url, task_id.clone(), node.clone())).await?;
    let mut inbox = transport.open(&node)?;
    let mut global: Option<TensorSet> = None;
    while let Some(bytes) = inbox.recv().await {
        let envelope = Envelope::decode(&bytes)?;
        let reply = match envelope.body {
            Body::Setup { .. } => Some(Body::Hello {
                train: 100,
                validation: 100,
                test: 100,
            }),
            Body::GlobalWeights { tensors, .. } => {
                global = Some(tensors);
                None
            }
            Body::Train { digest, .. } => global.clone().map(|tensors| Body::Update {
                samples: 100,
                base_digest: digest,
                metrics: Metrics {
                    loss: Some(1.0),
                    accuracy: Some(0.5),
                    extra: BTreeMap::from([("train_seconds".to_owned(), 0.0)]),
                },
                tensors,
            }),
            Body::Decide {
                mut schedule, test, ..
            } => {
                let validation = fixed_metrics();
                if let Some(record) = schedule.history.last_mut() {
                    record.validation = Some(validation.clone());
                }
                Some(Body::Decided {
                    validation: Some(validation),
                    test: test.then(fixed_metrics),
                    decision: Decision {
                        best: schedule.default_best(),
                        finished: schedule.default_finished(),
                    },
                })
            }
            Body::Finish { .. } => Some(Body::Finished {
                test: Some(fixed_metrics()),
                files: Vec::new(),
            }),
            Body::Stop { .. } => break,
            _ => None,
        };
        if let Some(body) = reply {
            let message = Envelope::new(task_id.as_str(), envelope.round, node.as_str(), body);
            transport.send(COORDINATOR, message.encode()?)?;
        }
    }
    transport.flush().await;
    Ok(())
}
