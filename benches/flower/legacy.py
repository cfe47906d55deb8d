"""The digits FedAvg task on Flower's legacy gRPC mode: `flwr.server.start_server` (a gRPC
server with bidirectional streams to the clients) and `flwr.client.start_client` with a
`NumPyClient`, both deprecated since Flower 1.13 and still shipped in 1.42 (`flwr.compat`).

    python legacy.py server --address 127.0.0.1:PORT --package DIR --initiator DIR \
        --results FILE [--rounds 20 --merge-epochs 1 --seed 0 --clients 3]
    python legacy.py client --address 127.0.0.1:PORT --site site-1 --data DIR --package DIR

The training, evaluation and aggregation are the deployment app's (digits_app/digits_fl/
task.py), so both Flower modes and the engine compute the same thing; the server records
the same per-round timings as the ServerApp. Run by benches/flower/run.py.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "digits_app"))

from digits_fl.task import AGGREGATIONS, Evaluator, Trainer, initial_weights, model_bytes  # noqa: E402


def serve(args: argparse.Namespace) -> None:
    import flwr
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAvg

    package = Path(args.package)
    initial = initial_weights(package)
    names = list(initial)  # sorted by name; parameters travel as a list in this order
    evaluator = Evaluator(package, Path(args.initiator), threads=args.threads)
    aggregate = AGGREGATIONS[args.aggregation]
    rounds: dict[int, dict] = {}
    timeline: dict[str, float] = {}

    class TimedFedAvg(FedAvg):
        """Flower's legacy FedAvg, recording each round's timing and per-site metrics."""

        def configure_fit(self, server_round, parameters, client_manager):
            if "federation_ready" not in timeline:
                # Round 1 waits for the clients to connect; the run is timed from here, as
                # the engine's and the deployment mode's are from a federation already up.
                client_manager.wait_for(args.clients)
                timeline["federation_ready"] = time.time()
            rounds[server_round] = {"round": server_round, "start": time.time()}
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round, results, failures):
            record = rounds[server_round]
            record["failures"] = len(failures)
            if not results:
                record["end"] = time.time()
                return None, {}
            updates, clients = [], []
            for _, res in results:
                site = str(res.metrics["site"])
                arrays = parameters_to_ndarrays(res.parameters)
                updates.append((site, res.num_examples, dict(zip(names, arrays))))
                clients.append(
                    {
                        "site": site,
                        "samples": res.num_examples,
                        "loss": float(res.metrics["loss"]),
                        "train_seconds": float(res.metrics["train-seconds"]),
                        "load_seconds": float(res.metrics["load-seconds"]),
                        "train_start": float(res.metrics["train-start"]),
                        "train_end": float(res.metrics["train-end"]),
                    }
                )
            averaged = aggregate(updates)
            parameters = ndarrays_to_parameters([averaged[n] for n in names])
            total = sum(c["samples"] for c in clients)
            loss = sum(c["loss"] * c["samples"] for c in clients) / total
            record["clients"] = sorted(clients, key=lambda c: c["site"])
            record["end"] = time.time()
            return parameters, {"train-loss": loss}

    def evaluate(server_round, arrays, _config):
        # The engine tests the global model after each round, not before the first.
        if server_round == 0:
            return None
        started = time.time()
        weights = dict(zip(names, arrays))
        validation = evaluator.evaluate(weights, "Validation")
        test = evaluator.evaluate(weights, "Test")
        record = rounds.setdefault(server_round, {"round": server_round})
        record["validation_accuracy"] = validation["accuracy"]
        record["test_accuracy"] = test["accuracy"]
        record["test_loss"] = test["loss"]
        record["eval_seconds"] = time.time() - started
        return test["loss"], {"validation-accuracy": validation["accuracy"], "test-accuracy": test["accuracy"]}

    strategy = TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,  # no federated evaluation: the sites hold no held-out data
        min_fit_clients=args.clients,
        min_evaluate_clients=0,
        min_available_clients=args.clients,
        evaluate_fn=evaluate,
        on_fit_config_fn=lambda r: {"server-round": r, "merge-epochs": args.merge_epochs},
        accept_failures=False,
        initial_parameters=ndarrays_to_parameters([initial[n] for n in names]),
    )
    started = time.time()
    flwr.server.start_server(
        server_address=args.address,
        config=flwr.server.ServerConfig(num_rounds=args.rounds),
        strategy=strategy,
    )
    finished = time.time()
    results = Path(args.results)
    tmp = results.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "mode": "legacy",
                "aggregation": args.aggregation,
                "model_bytes": model_bytes(initial),
                "strategy_start": started,
                "federation_ready": timeline.get("federation_ready"),
                "strategy_end": finished,
                "rounds": [rounds[r] for r in sorted(rounds)],
            },
            indent=1,
        )
    )
    tmp.replace(results)


def client(args: argparse.Namespace) -> None:
    import flwr

    trainer = Trainer(Path(args.package), Path(args.data), seed=args.seed, threads=args.threads)
    names = list(initial_weights(Path(args.package)))

    class SiteClient(flwr.client.NumPyClient):
        def fit(self, parameters, config):
            result = trainer.train_round(
                dict(zip(names, parameters)),
                round_index=int(config["server-round"]) - 1,
                merge_epochs=int(config["merge-epochs"]),
            )
            metrics = {
                "site": args.site,
                "loss": result["loss"],
                "accuracy": result["accuracy"],
                "train-seconds": result["train_seconds"],
                "load-seconds": result["load_seconds"],
                "train-start": result["train_start"],
                "train-end": result["train_end"],
            }
            return [result["weights"][n] for n in names], result["samples"], metrics

    flwr.client.start_client(server_address=args.address, client=SiteClient().to_client(), insecure=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("server")
    s.add_argument("--address", required=True)
    s.add_argument("--package", required=True)
    s.add_argument("--initiator", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--rounds", type=int, default=20)
    s.add_argument("--merge-epochs", type=int, default=1)
    s.add_argument("--clients", type=int, default=3)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--aggregation", choices=sorted(AGGREGATIONS), default="engine")
    c = sub.add_parser("client")
    c.add_argument("--address", required=True)
    c.add_argument("--site", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--package", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    serve(args) if args.command == "server" else client(args)


if __name__ == "__main__":
    main()
