"""ClientApp: one site of the digits task. The SuperNode's node config names the site and
its data (`site="site-1" data-dir="/abs/datasets/digits/site-1"`); the run config names the
model package and the seed."""

from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from digits_fl.task import Trainer

app = ClientApp()

# A ClientApp process may serve several messages; the site's decoded data is kept between
# them (the engine's agents keep theirs too).
_trainers: dict[tuple, Trainer] = {}


def _trainer(context: Context) -> Trainer:
    key = (
        context.run_config["package"],
        context.node_config["data-dir"],
        int(context.run_config["seed"]),
        int(context.run_config["threads"]),
    )
    if key not in _trainers:
        _trainers[key] = Trainer(Path(key[0]), Path(key[1]), seed=key[2], threads=key[3])
    return _trainers[key]


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Trains the round's local epochs from the received global weights."""
    received = msg.content["arrays"]
    config = msg.content["config"]
    weights = {name: array.numpy() for name, array in received.items()}
    result = _trainer(context).train_round(
        weights,
        round_index=int(config["server-round"]) - 1,
        merge_epochs=int(config["merge-epochs"]),
    )
    metrics = MetricRecord(
        {
            "num-examples": result["samples"],
            "loss": result["loss"],
            "accuracy": result["accuracy"],
            "train-seconds": result["train_seconds"],
            "load-seconds": result["load_seconds"],
            "train-start": result["train_start"],
            "train-end": result["train_end"],
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in result["weights"].items()}),
            "metrics": metrics,
            "site": ConfigRecord({"site": str(context.node_config["site"])}),
        }
    )
    return Message(content=content, reply_to=msg)
