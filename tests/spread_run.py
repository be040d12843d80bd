"""Trains tiny runs in a fresh process, as tests/test_distribute.py asks, and prints what it saw
as JSON: a process of its own, because splitting the CPU into logical devices must come before
TensorFlow starts.

    python spread_run.py CORPUS WORKDIR SPEC_JSON

SPEC_JSON: a list of trainings, each {"name", "strategy", "replicas", "train": {TrainConfig
fields}, "resume": bool}; each trains into WORKDIR/<run> (run defaults to name). Prints {name:
{"losses": [per step], "weights": {name: list}, "val_loss", "spread"}}.
"""

import json
import sys

from charrnn.train import train
from charrnn.train.hooks import Hook
from helpers import TINY_MODEL


class Losses(Hook):
    def __init__(self):
        self.losses = []

    def on_step(self, state, loss):
        self.losses.append(loss)


def main(corpus, work_dir, spec):
    from charrnn.rundir import RunDir

    from charrnn.backend import import_tensorflow

    jobs = json.loads(spec)
    # The logical CPUs that mirrored jobs need, made before TensorFlow starts (the first job may
    # be a one-device one, which starts it).
    tf = import_tensorflow()
    replicas = max(job.get("replicas") or 1 for job in jobs)
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    seen = {}
    for job in jobs:
        recorder = Losses()
        run_dir = f"{work_dir}/{job.get('run', job['name'])}"
        result = train(
            [corpus], run_dir, dict(TINY_MODEL), job["train"], resume=job.get("resume", False), quiet=True,
            log=lambda line: None, strategy=job["strategy"], replicas=job.get("replicas"), hooks=[recorder],
        )
        weights = RunDir(run_dir).load_weights("latest")
        seen[job["name"]] = {
            "losses": recorder.losses,
            "weights": {k: v.tolist() for k, v in weights.items()},
            "val_loss": result.best_val_loss,
            "step": result.step,
            "spread": result.spread,
        }
    print(json.dumps(seen))


if __name__ == "__main__":
    main(*sys.argv[1:])
