#!/usr/bin/env python3
"""End-to-end comparison of fedengine with Flower on the shipped digits FedAvg task.

    python3 benches/flower/run.py --repeats 3 --out result.json

Each repeat runs, one after the other (interleaved, so that drift in the machine's load
touches every system alike):

- engine: nats-server, `engine coordinator` and one `engine agent` per node (initiator,
  site-1..3) as separate processes, then `engine submit --nats` of workflows/fedavg.yaml
  (absolute paths, output in a temporary directory, early stopping off so that every system
  runs all the rounds);
- deployment: Flower's deployment runtime: `flower-superlink` and three `flower-supernode`
  processes (one per site), then `flwr run` of the Flower app in digits_app/;
- legacy: Flower's legacy gRPC mode: `flwr.server.start_server` and three
  `flwr.client.start_client` processes (legacy.py).

Every system runs in a private network namespace (`unshare -n`) where it can, so the
loopback counters count its traffic only. See README.md for what each figure means.
Only the standard library is used here; Flower runs in its own environment (setup.sh).
Exits non-zero with a message when a process does not start or a run does not finish.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SITES = ["site-1", "site-2", "site-3"]
NODES = ["initiator", *SITES]
SYSTEMS = ["engine", "deployment", "legacy"]
# Accuracies (0..1) must agree within one percentage point for the comparison to count.
AGREEMENT = 0.01


class BenchError(Exception):
    """Something did not start or did not finish; the message says what and where."""


# --- Processes -------------------------------------------------------------------------------


def _process_tree() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        fields = text[text.rfind(")") + 2 :].split()
        parents[int(stat.split("/")[2])] = int(fields[1])
    return parents


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2 :].split()[0] != "Z"


class Processes:
    """The processes one system's run started, each logging to a file in `work`; `stop`
    ends them and everything they started (by pid, descendants included)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.started: list[tuple[str, subprocess.Popen, Path]] = []
        self.seen: set[int] = set()

    def start(self, name: str, argv: list[str], env: dict | None = None, cwd: Path = REPO) -> subprocess.Popen:
        log = self.work / f"{name}.log"
        with open(log, "wb") as out:
            try:
                proc = subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
                )
            except OSError as e:
                raise BenchError(f"{name}: could not start {argv[0]}: {e}") from e
        self.started.append((name, proc, log))
        return proc

    def log_of(self, name: str) -> Path:
        return next(log for n, _, log in self.started if n == name)

    def tail(self, name: str, lines: int = 25) -> str:
        text = self.log_of(name).read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def wait_for(self, name: str, needle: str, timeout: float) -> None:
        """Waits until `name`'s log contains `needle`."""
        proc = next(p for n, p, _ in self.started if n == name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_of(name).read_text(errors="replace"):
                return
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with status {proc.returncode} before it was ready "
                    f"(waiting for {needle!r}); its log ({self.log_of(name)}) ends:\n{self.tail(name)}"
                )
            self._remember()
            time.sleep(0.05)
        raise BenchError(
            f"{name} was not ready after {timeout:.0f} s (waiting for {needle!r}); its log "
            f"({self.log_of(name)}) ends:\n{self.tail(name)}"
        )

    def _remember(self) -> None:
        """Notes the descendants of the started processes (a child may be reparented once
        its parent exits; it is still ours to stop)."""
        tree = _process_tree()
        roots = {p.pid for _, p, _ in self.started} | self.seen
        children: dict[int, list[int]] = {}
        for pid, ppid in tree.items():
            children.setdefault(ppid, []).append(pid)
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if pid in tree:
                self.seen.add(pid)
            stack.extend(c for c in children.get(pid, []) if c not in self.seen)

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM to every process started and every descendant, SIGKILL after `grace`."""
        self._remember()
        pids = [pid for pid in self.seen if pid != os.getpid()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            for _, proc, _ in self.started:
                proc.poll()  # reap our children
            if not any(_alive(pid) for pid in pids):
                break
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _, proc, _ in self.started:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_bytes() -> int:
    """Bytes received on `lo` (each loopback byte is sent and received once on `lo`)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    raise BenchError("/proc/net/dev has no `lo` interface")


def run_timed(procs: Processes, name: str, argv: list[str], env: dict | None, timeout: float, cwd: Path = REPO):
    """Runs a command to completion; returns (seconds, loopback bytes) of its run."""
    lo0, t0 = loopback_bytes(), time.perf_counter()
    proc = procs.start(name, argv, env=env, cwd=cwd)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name} did not finish within {timeout:.0f} s; its log ends:\n{procs.tail(name)}")
    seconds, lo = time.perf_counter() - t0, loopback_bytes() - lo0
    if rc != 0:
        raise BenchError(f"{name} failed with status {rc}; its log ({procs.log_of(name)}) ends:\n{procs.tail(name)}")
    return seconds, lo


# --- The task --------------------------------------------------------------------------------


def workflow_values(text: str) -> dict:
    """The top-level values of the shipped workflow the Flower runs need."""

    def scalar(key: str, default=None):
        m = re.search(rf"^{key}:\s*([^\s#]+)", text, re.M)
        if m is None and default is None:
            raise BenchError(f"workflows/fedavg.yaml has no top-level `{key}`")
        return m.group(1) if m else default

    weighting = re.search(r"^aggregation:\s*\n(?:\s+.*\n)*?\s+weighting:\s*(\w+)", text, re.M)
    values = {
        "seed": int(scalar("seed")),
        "rounds": int(scalar("max_rounds")),
        "merge_epochs": int(scalar("merge_epochs", "1")),
        "threads": int(scalar("threads", "1")),
        "weighting": weighting.group(1) if weighting else "samples",
        "model": scalar("model"),
    }
    if values["weighting"] != "samples":
        raise BenchError("the Flower apps reproduce `weighting: samples` only")
    if values["model"] != "../models/digits-cnn":
        raise BenchError("the Flower apps reproduce the models/digits-cnn package only")
    return values


def engine_workflow(text: str, out: Path, rounds: int) -> str:
    """The shipped workflow with absolute paths, its output in `out`, `rounds` rounds and
    early stopping off (every system runs every round and the final model is the last)."""
    text = text.replace("../models/", f"{REPO}/models/").replace("../datasets/", f"{REPO}/datasets/")
    text, n = re.subn(r"^output:.*$", f"output: {out}", text, flags=re.M)
    text, m = re.subn(r"^max_rounds:.*$", f"max_rounds: {rounds}", text, flags=re.M)
    text, k = re.subn(r"^early_stopping:\s*\n(?:[ \t]+.*\n|[ \t]*\n)*", "early_stopping:\n  enabled: false\n\n", text, flags=re.M)
    if (n, m, k) != (1, 1, 1):
        raise BenchError("workflows/fedavg.yaml changed shape: cannot set output, max_rounds and early_stopping")
    return text


def model_bytes(package: Path) -> int:
    """Bytes of the float tensors the engine exchanges (safetensors header; BatchNorm
    counters excluded as the engine's built-in SmallCnn does)."""
    raw = (package / "model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return sum(
        v["data_offsets"][1] - v["data_offsets"][0]
        for k, v in header.items()
        if k != "__metadata__" and not k.endswith("num_batches_tracked")
    )


def round_figures(rounds: list[dict]) -> dict:
    """Medians over the rounds of one run: round time, overhead (round time minus the
    slowest participant's training seconds) and its share of the round."""
    seconds = [r["seconds"] for r in rounds]
    overheads = [r["overhead_seconds"] for r in rounds if r.get("overhead_seconds") is not None]
    shares = [r["overhead_seconds"] / r["seconds"] for r in rounds if r.get("overhead_seconds") is not None and r["seconds"] > 0]
    complete = len(overheads) == len(rounds)
    tests = [r["test_accuracy"] for r in rounds if r.get("test_accuracy") is not None]
    return {
        "rounds_run": len(rounds),
        "median_round_seconds": statistics.median(seconds) if seconds else None,
        "median_overhead_seconds": statistics.median(overheads) if complete and overheads else None,
        "median_overhead_share": statistics.median(shares) if complete and shares else None,
        "median_max_train_seconds": statistics.median(r["max_train_seconds"] for r in rounds) if complete and rounds else None,
        "final_test_accuracy": rounds[-1].get("test_accuracy") if rounds else None,
        "best_test_accuracy": max(tests) if tests else None,
    }


# --- The three systems (each runs in its own child process, see `one`) -----------------------


def run_engine(work: Path, args) -> dict:
    engine, nats = args.engine, args.nats_server
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    procs = Processes(work)
    try:
        port = free_port()
        url = f"nats://127.0.0.1:{port}"
        procs.start("nats-server", [nats, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(work / "jetstream")], env)
        procs.wait_for("nats-server", "Server is ready", 30)
        procs.start("coordinator", [engine, "coordinator", "--nats", url, "--work-dir", str(work / "coordinator")], env)
        procs.wait_for("coordinator", "ready on", 60)
        for node in NODES:
            procs.start(
                f"agent-{node}",
                [engine, "agent", "--nats", url, "--node", node, "--data", f"digits={REPO}/datasets/digits/{node}",
                 "--work-dir", str(work / f"agent-{node}")],
                env,
            )
        for node in NODES:
            procs.wait_for(f"agent-{node}", "ready on", 60)
        out = work / "output"
        workflow = work / "fedavg.yaml"
        workflow.write_text(engine_workflow((REPO / "workflows/fedavg.yaml").read_text(), out, args.rounds))
        check = subprocess.run([engine, "validate", str(workflow)], cwd=REPO, env=env, capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"engine validate {workflow} failed:\n{check.stdout}{check.stderr}")
        seconds, lo = run_timed(procs, "submit", [engine, "submit", "--quiet", "--nats", url, str(workflow)], env, args.timeout)
    finally:
        procs.stop()

    report = out / "report.zip"
    if not report.exists():
        raise BenchError(f"engine submit finished but wrote no {report}")
    with zipfile.ZipFile(report) as z:
        summary = json.loads(z.read("summary.json"))
        records = json.loads(z.read("metrics.json"))
    rounds, notes = engine_rounds(summary, records)
    final = (summary.get("final_test") or {}).get("accuracy")
    return {
        "total_seconds": seconds,
        "loopback_bytes": lo,
        "rounds": rounds,
        "final_test_accuracy_reported": final,
        "notes": notes,
    }


def engine_rounds(summary: dict, records: list[dict]) -> tuple[list[dict], list[str]]:
    """Per-round figures from the engine's summary.json and metrics.json, and notes."""
    # Per-node training seconds: the sites' records of each round in metrics.json, under
    # `train_seconds` (or `extra.train_seconds`); a site record's `duration_seconds` ("wall
    # time the node spent on the round") is taken when that is all there is.
    train: dict[int, dict[str, float]] = {}
    missing, from_duration = False, False
    for rec in records:
        if rec.get("node") in SITES and rec.get("samples"):
            value = rec.get("train_seconds", (rec.get("extra") or {}).get("train_seconds"))
            if value is None and (rec.get("duration_seconds") or 0) > 0:
                value, from_duration = rec["duration_seconds"], True
            if value is None:
                missing = True
            else:
                train.setdefault(rec["round"], {})[rec["node"]] = float(value)
    rounds = []
    for r in summary["rounds"]:
        sites = train.get(r["round"], {})
        slowest = max(sites.values()) if sites and len(sites) == len(r["participants"]) else None
        rounds.append(
            {
                "round": r["round"],
                "seconds": r["seconds"],
                "train_seconds": sites,
                "max_train_seconds": slowest,
                "overhead_seconds": None if slowest is None else r["seconds"] - slowest,
                "validation_accuracy": r.get("validation_accuracy"),
                "test_accuracy": r.get("test_accuracy"),
            }
        )
    notes = []
    if missing:
        notes.append(
            "this engine build's metrics.json has no per-node `train_seconds`: round overhead "
            "cannot be computed for the engine"
        )
    if from_duration:
        notes.append("the engine's per-node training seconds are metrics.json's `duration_seconds`")
    if summary.get("stopped_early"):
        notes.append("the engine stopped early although early stopping was off")
    return rounds, notes


def flower_env(args, home: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(args.flower_python).parent}:{env.get('PATH', '')}",
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONPATH", None)
    return env


def flower_rounds(results: dict) -> list[dict]:
    rounds = []
    for r in results["rounds"]:
        if "end" not in r or "clients" not in r:
            raise BenchError(f"Flower round {r.get('round')} did not complete (failures: {r.get('failures')})")
        slowest = max(c["train_seconds"] for c in r["clients"])
        seconds = r["end"] - r["start"]
        rounds.append(
            {
                "round": r["round"],
                "seconds": seconds,
                "train_seconds": {c["site"]: c["train_seconds"] for c in r["clients"]},
                # Part of train_seconds: decoding the site's images in a fresh process.
                "load_seconds": {c["site"]: c.get("load_seconds") for c in r["clients"]},
                "max_train_seconds": slowest,
                "overhead_seconds": seconds - slowest,
                "validation_accuracy": r.get("validation_accuracy"),
                "test_accuracy": r.get("test_accuracy"),
                "eval_seconds": r.get("eval_seconds"),
            }
        )
    return rounds


def run_deployment(work: Path, args) -> dict:
    procs = Processes(work)
    results = work / "serverapp-results.json"
    try:
        link_port = free_port()
        procs.start(
            "superlink",
            ["flower-superlink", "--insecure", "--disable-runtime-dependency-installation", "--port", str(link_port)],
            flower_env(args, work / "home-superlink"),
        )
        procs.wait_for("superlink", "Uvicorn running on", 90)
        for site in SITES:
            node_config = f'site="{site}" data-dir="{REPO}/datasets/digits/{site}"'
            procs.start(
                f"supernode-{site}",
                ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                 "--port", str(free_port()), "--node-config", node_config],
                flower_env(args, work / f"home-{site}"),
            )
        for site in SITES:
            procs.wait_for(f"supernode-{site}", "SuperNode ID:", 90)
            procs.wait_for(f"supernode-{site}", "Starting Flower SuperExec", 90)
        # The CLI's connection to the SuperLink, and the run config: the workflow's values.
        cli_home = work / "home-cli"
        cli_home.mkdir()
        (cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n'
        )
        run_config = work / "run-config.toml"
        run_config.write_text(
            "\n".join(
                [
                    f'package = "{REPO}/models/digits-cnn"',
                    f'initiator-dir = "{REPO}/datasets/digits/initiator"',
                    f'results-file = "{results}"',
                    f"num-server-rounds = {args.rounds}",
                    f"merge-epochs = {args.task['merge_epochs']}",
                    f"seed = {args.task['seed']}",
                    f"threads = {args.task['threads']}",
                    f"min-nodes = {len(SITES)}",
                    f'aggregation = "{args.aggregation}"',
                ]
            )
            + "\n"
        )
        seconds, lo = run_timed(
            procs, "flwr-run",
            ["flwr", "run", str(HERE / "digits_app"), "bench", "--stream", "--run-config", str(run_config)],
            flower_env(args, cli_home), args.timeout,
        )
        # `flwr run --stream` returns when the run ends; the ServerApp wrote its results last.
        deadline = time.monotonic() + 30
        while not results.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        procs.stop()
    if not results.exists():
        raise BenchError(f"the Flower run ended without the ServerApp's results ({results}); see {work}/flwr-run.log and superlink.log")
    data = json.loads(results.read_text())
    return {"total_seconds": seconds, "loopback_bytes": lo, "rounds": flower_rounds(data), "notes": []}


def run_legacy(work: Path, args) -> dict:
    procs = Processes(work)
    results = work / "server-results.json"
    python, script = args.flower_python, str(HERE / "legacy.py")
    address = f"127.0.0.1:{free_port()}"
    try:
        server = procs.start(
            "server",
            [python, script, "server", "--address", address, "--package", f"{REPO}/models/digits-cnn",
             "--initiator", f"{REPO}/datasets/digits/initiator", "--results", str(results),
             "--rounds", str(args.rounds), "--merge-epochs", str(args.task["merge_epochs"]),
             "--threads", str(args.task["threads"]), "--clients", str(len(SITES)), "--aggregation", args.aggregation],
            flower_env(args, work / "home-server"),
        )
        procs.wait_for("server", "gRPC server running", 90)
        lo0 = loopback_bytes()
        for site in SITES:
            procs.start(
                f"client-{site}",
                [python, script, "client", "--address", address, "--site", site,
                 "--data", f"{REPO}/datasets/digits/{site}", "--package", f"{REPO}/models/digits-cnn",
                 "--seed", str(args.task["seed"]), "--threads", str(args.task["threads"])],
                flower_env(args, work / f"home-{site}"),
            )
        try:
            rc = server.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the legacy Flower server did not finish within {args.timeout:.0f} s; its log ends:\n{procs.tail('server')}")
        lo = loopback_bytes() - lo0
        if rc != 0 or not results.exists():
            raise BenchError(f"the legacy Flower server failed (status {rc}); its log ends:\n{procs.tail('server')}")
        for site in SITES:  # the clients leave when the server says so
            try:
                next(p for n, p, _ in procs.started if n == f"client-{site}").wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
    finally:
        procs.stop()
    data = json.loads(results.read_text())
    # Timed from the moment the three clients are connected (the federation is up, as the
    # other systems' services are before their runs) to the server's end.
    seconds = data["strategy_end"] - data["federation_ready"]
    return {"total_seconds": seconds, "loopback_bytes": lo, "rounds": flower_rounds(data), "notes": []}


RUNNERS = {"engine": run_engine, "deployment": run_deployment, "legacy": run_legacy}


def one(args) -> None:
    """Child mode: runs one system once and writes its figures to `args.result`."""
    if args.netns:
        up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
        if up.returncode != 0:
            raise BenchError(f"could not bring up lo in the network namespace: {up.stderr.strip()}")
    work = Path(args.work)
    started = time.time()
    result = RUNNERS[args.one](work, args)
    rounds = result["rounds"]
    result.update(round_figures(rounds))
    result["system"] = args.one
    result["started"] = started
    result["loopback_bytes_per_round"] = result["loopback_bytes"] / len(rounds) if rounds else None
    result["loopback_isolated"] = bool(args.netns)
    Path(args.result).write_text(json.dumps(result, indent=1))


# --- The parent: repeats, summary, agreement -------------------------------------------------


def find_engine(given: str | None) -> str:
    if given:
        if not os.access(given, os.X_OK):
            raise BenchError(f"--engine {given}: not an executable file")
        return given
    candidates = [os.environ.get("FEDENGINE_ENGINE")]
    cache = Path(os.environ.get("FEDENGINE_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedengine"))
    candidates += sorted(glob.glob(str(cache / "target-rust*/release/engine")), key=os.path.getmtime, reverse=True)
    candidates.append(str(REPO / "target/release/engine"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise BenchError("no release `engine` binary found (build it with `cargo build --release`, or pass --engine PATH)")


def netns_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "--", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


def spread(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


FIGURES = [
    "total_seconds",
    "median_round_seconds",
    "median_overhead_seconds",
    "median_overhead_share",
    "median_max_train_seconds",
    "final_test_accuracy",
    "best_test_accuracy",
    "loopback_bytes_per_round",
    "rounds_run",
]


def versions(args) -> dict:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    flower = out([args.flower_python, "-c", "import flwr, torch, numpy; print(flwr.__version__, torch.__version__, numpy.__version__)"])
    flwr_v, torch_v, numpy_v = (flower or "? ? ?").split()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), None)
    return {
        "flwr": flwr_v,
        "torch": torch_v,
        "numpy": numpy_v,
        "engine": out([args.engine, "--version"]),
        "nats_server": out([args.nats_server, "--version"]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="flower-comparison.json", help="the JSON result (default: %(default)s)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of %(default)s")
    parser.add_argument("--rounds", type=int, help="rounds (default: the workflow's max_rounds)")
    parser.add_argument("--engine", help="the engine binary (default: the newest release build in the cache)")
    parser.add_argument("--nats-server", default=os.environ.get("FEDENGINE_NATS_SERVER", str(REPO / ".venv/bin/nats-server")))
    parser.add_argument("--aggregation", choices=["engine", "flower"], default="engine",
                        help="FedAvg arithmetic in the Flower apps (default: the engine's, see README)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one system's run may take")
    parser.add_argument("--no-netns", action="store_true", help="share the machine's loopback (counts others' traffic)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs, outputs)")
    # Child mode (internal).
    parser.add_argument("--one", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--netns", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flower-python", help=argparse.SUPPRESS)
    parser.add_argument("--task-json", help=argparse.SUPPRESS)
    args = parser.parse_args()

    try:
        if args.one:
            args.task = json.loads(args.task_json)
            one(args)
            return 0
        return parent(args)
    except BenchError as e:
        print(f"run.py: error: {e}", file=sys.stderr)
        return 1


def parent(args) -> int:
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise BenchError(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    task = workflow_values((REPO / "workflows/fedavg.yaml").read_text())
    args.rounds = args.rounds or task["rounds"]
    args.engine = find_engine(args.engine) if "engine" in systems else (args.engine or "engine")
    if "engine" in systems and not os.access(args.nats_server, os.X_OK):
        raise BenchError(f"no nats-server at {args.nats_server} (scripts/setup installs it)")
    setup = subprocess.run(["bash", str(HERE / "setup.sh")], capture_output=True, text=True)
    if setup.returncode != 0:
        raise BenchError(f"benches/flower/setup.sh failed:\n{setup.stderr}")
    args.flower_python = setup.stdout.strip().splitlines()[-1]
    isolate = not args.no_netns and netns_works()
    if not isolate:
        print("run.py: warning: no private network namespace; loopback bytes include any other "
              "loopback traffic on this machine", file=sys.stderr)

    base = Path(tempfile.mkdtemp(prefix="flower-bench-"))
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    try:
        for repeat in range(1, args.repeats + 1):
            for system in systems:
                work = base / f"{repeat}-{system}"
                work.mkdir()
                result = work / "result.json"
                argv = [sys.executable, str(Path(__file__).resolve()), "--one", system, "--work", str(work),
                        "--result", str(result), "--flower-python", args.flower_python, "--task-json", json.dumps(task),
                        "--rounds", str(args.rounds), "--engine", args.engine, "--nats-server", args.nats_server,
                        "--aggregation", args.aggregation, "--timeout", str(args.timeout)]
                if isolate:
                    argv = ["unshare", "-n", "--", *argv, "--netns"]
                print(f"[{repeat}/{args.repeats}] {system} ...", file=sys.stderr, flush=True)
                child = subprocess.run(argv, cwd=REPO)
                if child.returncode != 0 or not result.exists():
                    raise BenchError(f"the {system} run of repeat {repeat} failed (logs in {work})")
                figures = json.loads(result.read_text())
                figures["repeat"] = repeat
                runs[system].append(figures)
                print(describe(figures), file=sys.stderr, flush=True)
                for note in figures.get("notes", []):
                    print(f"    note: {note}", file=sys.stderr)
                if figures["rounds_run"] != args.rounds:
                    raise BenchError(f"{system} ran {figures['rounds_run']} rounds, not {args.rounds}")
    finally:
        if not args.keep and all(runs.values()) and len(runs[systems[-1]]) == args.repeats:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"run.py: work directories (logs, outputs) kept in {base}", file=sys.stderr)

    report = summarise(args, task, runs, isolate)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    for line in report["agreement"]["messages"] + report["targets"]["messages"]:
        print(line, file=sys.stderr)
    return 0


def describe(f: dict) -> str:
    def s(x, unit="s"):
        return "n/a" if x is None else f"{x:.3f} {unit}"

    acc = f.get("final_test_accuracy")
    return (
        f"    {f['rounds_run']} rounds in {s(f['total_seconds'])}; median round {s(f['median_round_seconds'])}, "
        f"overhead {s(f['median_overhead_seconds'])}; final test accuracy "
        f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}; loopback {f['loopback_bytes_per_round'] / 1e3:.1f} kB/round"
    )


def summarise(args, task: dict, runs: dict[str, list[dict]], isolated: bool) -> dict:
    systems = {
        name: {figure: spread([r.get(figure) for r in results]) for figure in FIGURES}
        for name, results in runs.items()
    }
    # Agreement: each Flower mode's final (and best) test accuracy against the engine's of
    # the same repeat.
    agreement: dict = {"tolerance": AGREEMENT, "modes": {}, "messages": []}
    if "engine" in runs:
        engine_by_repeat = {r["repeat"]: r for r in runs["engine"]}
        for mode in ("deployment", "legacy"):
            if mode not in runs:
                continue
            diffs, best_diffs = [], []
            for r in runs[mode]:
                e = engine_by_repeat[r["repeat"]]
                diffs.append(r["final_test_accuracy"] - e["final_test_accuracy"])
                best_diffs.append(r["best_test_accuracy"] - e["best_test_accuracy"])
            ok = all(abs(d) <= AGREEMENT + 1e-12 for d in diffs)
            identical = all(
                [x["test_accuracy"] for x in r["rounds"]] == [x["test_accuracy"] for x in engine_by_repeat[r["repeat"]]["rounds"]]
                for r in runs[mode]
            )
            agreement["modes"][mode] = {
                "final_accuracy_differences": diffs,
                "best_accuracy_differences": best_diffs,
                "within_tolerance": ok,
                "every_round_identical": identical,
            }
            agreement["messages"].append(
                f"accuracy agreement, {mode} vs engine: "
                + ("within 1 point" if ok else "NOT within 1 point: the comparison does not count")
                + (" (every round's test accuracy identical)" if identical else "")
            )
    agreement["ok"] = all(m["within_tolerance"] for m in agreement["modes"].values()) if agreement["modes"] else None

    targets: dict = {"messages": []}
    if "engine" in systems and systems["engine"]["median_overhead_seconds"]:
        engine_overhead = systems["engine"]["median_overhead_seconds"]["median"]
        for mode in ("deployment", "legacy"):
            if mode in systems and systems[mode]["median_overhead_seconds"]:
                flower = systems[mode]["median_overhead_seconds"]["median"]
                met = engine_overhead < flower
                targets[f"engine_overhead_below_{mode}"] = met
                targets["messages"].append(
                    f"round overhead: engine {engine_overhead:.4f} s vs Flower {mode} {flower:.4f} s "
                    f"(median of medians): target {'met' if met else 'MISSED'}"
                )
    elif "engine" in systems:
        targets["messages"].append("round overhead: the engine's could not be computed (see notes)")

    return {
        "benchmark": "digits FedAvg, engine vs Flower (benches/flower)",
        "task": {
            "workflow": "workflows/fedavg.yaml",
            "participants": SITES,
            "rounds": args.rounds,
            "merge_epochs": task["merge_epochs"],
            "seed": task["seed"],
            "threads_per_node": task["threads"],
            "weighting": task["weighting"],
            "early_stopping": "off (every system runs every round; final = last round)",
            "flower_aggregation": args.aggregation,
            "model_parameter_bytes": model_bytes(REPO / "models/digits-cnn"),
        },
        "repeats": args.repeats,
        "order": "interleaved per repeat: " + ", ".join(runs),
        "loopback": (
            "bytes received on `lo` from /proc/net/dev during each system's run, divided by the rounds; "
            "every loopback byte of that system's processes, both directions through the broker/server "
            "(message payloads plus TCP/IP framing, heartbeats and polling) "
            + ("in a private network namespace, so only that system's traffic" if isolated
               else "on the shared loopback, so other traffic on the machine is included")
        ),
        "versions": versions(args),
        "systems": systems,
        "agreement": agreement,
        "targets": targets,
        "notes": sorted({f"{name}: {note}" for name, results in runs.items() for r in results for note in r.get("notes", [])}),
        "runs": runs,
    }


if __name__ == "__main__":
    sys.exit(main())
