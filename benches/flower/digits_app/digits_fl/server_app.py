"""ServerApp: FedAvg over the three sites for the configured rounds, starting from the
package's weights, with the global model evaluated on the initiator's Validation and Test
splits after every round (centralized evaluation), as the engine's initiator does.

Per round it records, in `results-file` (JSON): the round's training phase on the server
clock (from configuring the round to the aggregated model: the span the engine's per-round
`seconds` covers), each site's training seconds and clock, the evaluation time and the
accuracies.
"""

import json
import time
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from digits_fl.task import AGGREGATIONS, Evaluator, initial_weights, model_bytes

app = ServerApp()


class TimedFedAvg(FedAvg):
    """Flower's message-based FedAvg, recording each round's timing and per-site metrics,
    and averaging with the selected arithmetic (see task.AGGREGATIONS)."""

    def __init__(self, aggregation: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.aggregate = AGGREGATIONS[aggregation]
        self.rounds: dict[int, dict] = {}

    def configure_train(self, server_round, arrays, config, grid):
        self.rounds[server_round] = {"round": server_round, "start": time.time()}
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        valid, errors = self._check_and_log_replies(replies, is_train=True)
        record = self.rounds[server_round]
        record["failures"] = len(errors)
        if not valid:
            record["end"] = time.time()
            return None, None
        updates, clients = [], []
        for msg in valid:
            metrics = msg.content["metrics"]
            site = str(msg.content["site"]["site"])
            weights = {k: a.numpy() for k, a in msg.content["arrays"].items()}
            updates.append((site, int(metrics["num-examples"]), weights))
            clients.append(
                {
                    "site": site,
                    "samples": int(metrics["num-examples"]),
                    "loss": float(metrics["loss"]),
                    "train_seconds": float(metrics["train-seconds"]),
                    "load_seconds": float(metrics["load-seconds"]),
                    "train_start": float(metrics["train-start"]),
                    "train_end": float(metrics["train-end"]),
                }
            )
        averaged = self.aggregate(updates)
        arrays = ArrayRecord({k: Array(v) for k, v in averaged.items()})
        total = sum(c["samples"] for c in clients)
        loss = sum(c["loss"] * c["samples"] for c in clients) / total
        record["clients"] = sorted(clients, key=lambda c: c["site"])
        record["end"] = time.time()
        return arrays, MetricRecord({"train-loss": loss})


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    package = Path(str(cfg["package"]))
    results_file = Path(str(cfg["results-file"]))
    evaluator = Evaluator(package, Path(str(cfg["initiator-dir"])), threads=int(cfg["threads"]))
    nodes = int(cfg["min-nodes"])
    strategy = TimedFedAvg(
        aggregation=str(cfg["aggregation"]),
        fraction_train=1.0,
        fraction_evaluate=0.0,  # no federated evaluation: the sites hold no held-out data
        min_train_nodes=nodes,
        min_evaluate_nodes=0,
        min_available_nodes=nodes,
    )

    def evaluate(server_round: int, arrays: ArrayRecord):
        # The engine tests the global model after each round, not before the first.
        if server_round == 0:
            return None
        started = time.time()
        weights = {k: a.numpy() for k, a in arrays.items()}
        validation = evaluator.evaluate(weights, "Validation")
        test = evaluator.evaluate(weights, "Test")
        record = strategy.rounds.setdefault(server_round, {"round": server_round})
        record["validation_accuracy"] = validation["accuracy"]
        record["test_accuracy"] = test["accuracy"]
        record["test_loss"] = test["loss"]
        record["eval_seconds"] = time.time() - started
        return MetricRecord({"validation-accuracy": validation["accuracy"], "test-accuracy": test["accuracy"]})

    initial = initial_weights(package)
    started = time.time()
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({k: Array(v) for k, v in initial.items()}),
        num_rounds=int(cfg["num-server-rounds"]),
        train_config=ConfigRecord({"merge-epochs": int(cfg["merge-epochs"])}),
        evaluate_fn=evaluate,
    )
    finished = time.time()
    results_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = results_file.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "mode": "deployment",
                "aggregation": str(cfg["aggregation"]),
                "model_bytes": model_bytes(initial),
                "strategy_start": started,
                "strategy_end": finished,
                "rounds": [strategy.rounds[r] for r in sorted(strategy.rounds)],
            },
            indent=1,
        )
    )
    tmp.replace(results_file)
