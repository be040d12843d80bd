"""Training spread over several replicas and several processes follows the one-device run.

Mirrored training splits the CPU into two logical devices, which must happen before TensorFlow
starts: those runs are separate processes (tests/spread_run.py). Multi-worker runs are two
`charrnn train` processes on 127.0.0.1 with TF_CONFIG, as a user starts them.
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn.rundir import RunDir
from helpers import TINY_FLAGS, assert_error, epoch_steps, charrnn_command, invoke, run_charrnn, subprocess_env

TESTS = Path(__file__).resolve().parent
# Dropout 0 (the default) and one evaluation, at the end: equal runs must give equal numbers.
ONE_EPOCH = {"seq_length": 8, "batch_size": 4, "epochs": 1, "eval_every_s": 1000.0}


def spread_runs(corpus, work_dir, jobs):
    """Runs the trainings in `jobs` in one fresh process; returns what spread_run.py printed."""
    result = subprocess.run(
        [sys.executable, str(TESTS / "spread_run.py"), str(corpus), str(work_dir), json.dumps(jobs)],
        capture_output=True, text=True, timeout=300, env=dict(subprocess_env(), PYTHONPATH=str(TESTS)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def assert_same_weights(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(np.array(a[name]), np.array(b[name]), atol=atol, err_msg=name)


def clipped_jobs(state):
    """A mirrored and a one-device training, every step clipped, with the state carried or reset."""
    # Small enough that every step is clipped. Keras's own global_clipnorm, which clips each
    # replica's half of the gradient, was measured to miss these tolerances by far on this corpus:
    # losses 2.5e-3 apart, weights 1e-2. With the state carried, each replica carries its own rows'.
    clipped = dict(ONE_EPOCH, clipnorm=0.05, state=state)
    return [
        {"name": f"mirrored-{state}", "strategy": "mirrored", "replicas": 2, "train": clipped},
        {"name": f"one-{state}", "strategy": "one", "train": clipped},
    ]


def replica_change_jobs():
    """The same three sessions (one epoch each, the budget raised at each resume), once with 1, 2,
    then 1 replicas (run "spread"), and once on one device throughout (run "alone")."""
    jobs = []
    for run, replicas in (("spread", (1, 2, 1)), ("alone", (1, 1, 1))):
        for session, count in enumerate(replicas):
            strategy = {"strategy": "mirrored", "replicas": 2} if count == 2 else {"strategy": "one"}
            train = dict(ONE_EPOCH, epochs=session + 1)
            jobs.append({"name": f"{run}{session}", "run": run, **strategy, "train": train, "resume": session > 0})
    return jobs


@pytest.fixture(scope="module")
def spread_seen(corpus_file, tmp_path_factory):
    """The mirrored tests' trainings, all in one fresh process (a process and a TensorFlow start
    each would cost seconds a test): (the work directory of their runs, what spread_run.py saw)."""
    work_dir = tmp_path_factory.mktemp("spread")
    return work_dir, spread_runs(corpus_file, work_dir, [*clipped_jobs("carry"), *clipped_jobs("reset"), *replica_change_jobs()])


@pytest.mark.slow
@pytest.mark.parametrize("state", ["carry", "reset"])
def test_two_mirrored_replicas_follow_one_device_and_clip_by_the_global_norm(spread_seen, state):
    _, seen = spread_seen  # clipped_jobs(state)
    mirrored, one = seen[f"mirrored-{state}"], seen[f"one-{state}"]
    assert mirrored["spread"] == {"strategy": "mirrored", "replicas": 2, "workers": 1, "kernel": "fused"}
    assert one["spread"]["replicas"] == 1
    assert len(mirrored["losses"]) == len(one["losses"]) == epoch_steps(state=state)
    np.testing.assert_allclose(mirrored["losses"], one["losses"], atol=1e-3)
    assert abs(mirrored["val_loss"] - one["val_loss"]) < 1e-3
    assert_same_weights(mirrored["weights"], one["weights"], atol=1e-4)


@pytest.mark.slow
def test_resume_changes_the_number_of_replicas_and_back(spread_seen):
    # replica_change_jobs(): the same three sessions, once with 1, 2, then 1 replicas, and once on
    # one device throughout.
    work_dir, seen = spread_seen
    assert [seen[f"spread{i}"]["spread"]["replicas"] for i in range(3)] == [1, 2, 1]
    spread = [loss for i in range(3) for loss in seen[f"spread{i}"]["losses"]]
    alone = [loss for i in range(3) for loss in seen[f"alone{i}"]["losses"]]
    assert len(spread) == len(alone) == 3 * epoch_steps()
    np.testing.assert_allclose(spread, alone, atol=1e-3)
    assert seen["spread2"]["step"] == seen["alone2"]["step"] == 3 * epoch_steps()
    assert abs(seen["spread2"]["val_loss"] - seen["alone2"]["val_loss"]) < 1e-3
    assert_same_weights(seen["spread2"]["weights"], seen["alone2"]["weights"], atol=1e-4)
    rows = RunDir(work_dir / "spread").metrics.read()
    assert [(row["strategy"], row["replicas"]) for row in rows] == [("one", 1), ("mirrored", 2), ("one", 1)]


# --- several processes ---------------------------------------------------------------------------


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args, count=2, timeout_s=30):
    """Starts `count` `charrnn train ARGS` processes as one TF_CONFIG cluster on 127.0.0.1."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = []
    for index in range(count):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = dict(subprocess_env(), TF_CONFIG=json.dumps(config), CHARRNN_WORKER_TIMEOUT=str(timeout_s))
        processes.append(subprocess.Popen(
            charrnn_command("train", *args), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    return processes


def finish(processes, timeout=180):
    """Waits for every process; returns [(exit code, stdout, stderr)]. Kills them all on a timeout."""
    try:
        return [(p.wait(timeout=timeout), p.stdout.read(), p.stderr.read()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()


@pytest.mark.slow
def test_two_workers_on_localhost_follow_one_device(runner, corpus_file, tmp_path):
    run = tmp_path / "run"
    # With the state carried (not the default): each worker's replica carries its own rows, and a
    # checkpoint gathers them all.
    flags = [corpus_file, *TINY_FLAGS, "--epochs", "2", "--eval-every", "1000", "-q", "--state", "carry"]
    workers = finish(start_workers([*flags, "-r", run]))
    (chief_code, chief_out, chief_err), (code, out, err) = workers
    assert chief_code == 0 and code == 0, chief_err + err
    assert chief_out == out == ""
    assert f"trained {2 * epoch_steps(state='carry')} steps" in chief_err and "saved in" in chief_err
    assert err.strip().splitlines()[-1].startswith(f"worker done: trained {2 * epoch_steps(state='carry')} steps")
    assert "%|" not in err  # no progress bar from the worker that is not the chief

    # The one-device run and the commands on the chief's run, in-process (each process would start
    # TensorFlow again).
    alone = tmp_path / "alone"
    trained_alone = invoke(runner, ["train", *flags, "-r", alone, "--strategy", "one"])
    assert trained_alone.exit_code == 0, trained_alone.output
    ((last,), (expected,)) = (RunDir(run).metrics.read()[-1:], RunDir(alone).metrics.read()[-1:])
    assert (last["strategy"], last["replicas"], last["workers"]) == ("multi-worker", 2, 2)
    assert abs(last["train_loss"] - expected["train_loss"]) < 1e-3
    assert abs(last["val_loss"] - expected["val_loss"]) < 1e-3

    # The chief's run directory is a run like any other.
    info = json.loads(invoke(runner, ["info", "-r", run, "--json"]).stdout)
    assert info["steps"] == 2 * epoch_steps(state='carry') and info["spread"]["workers"] == 2
    sample = invoke(runner, ["sample", "-r", run, "--length", "20", "--random-seed", "1"])
    assert sample.exit_code == 0 and len(sample.stdout) >= 20
    exported = invoke(runner, ["export", "-r", run, "--format", "keras", "-o", tmp_path / "model.keras"])
    assert exported.exit_code == 0, exported.output


@pytest.mark.slow
def test_a_killed_worker_stops_the_chief_and_resume_continues(corpus_file, tmp_path):
    run = tmp_path / "run"
    flags = [corpus_file, *TINY_FLAGS, "--eval-every", "1000", "-q", "-r", run]
    chief, worker = start_workers([*flags, "--epochs", "1000"])
    try:
        # Wait for a checkpoint after the first epoch (epoch_steps() steps), then kill the other worker.
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.npz").exists() or RunDir(run).checkpoint.read_state().step < epoch_steps():
            assert chief.poll() is None and time.monotonic() < deadline, chief.stderr.read()
            time.sleep(0.1)
        worker.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = chief.wait(timeout=60)
        stopped_after = time.monotonic() - killed
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
    err = chief.stderr.read()
    assert code == 1 and stopped_after < 30, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("Error: lost contact with worker 1"), line
    assert "relaunch every worker with --resume" in line and "Traceback" not in err
    saved = RunDir(run).checkpoint.read_state()  # intact, and at an epoch's end
    assert saved.step >= epoch_steps() and saved.batch_in_epoch == 0

    # Relaunched with --resume, both workers continue from the chief's checkpoint.
    epochs = saved.epoch + 2
    workers = finish(start_workers([*flags, "--resume", "--epochs", str(epochs)]))
    assert [code for code, _, _ in workers] == [0, 0], workers[0][2] + workers[1][2]
    assert f"resuming {run} at step {saved.step:,}" in workers[0][2]
    assert RunDir(run).checkpoint.read_state().step == epoch_steps() * epochs


@pytest.mark.slow
def test_ctrl_c_on_any_worker_stops_all_after_the_same_step(corpus_file, tmp_path):
    run = tmp_path / "run"
    chief, worker = start_workers([corpus_file, *TINY_FLAGS, "--eval-every", "1000", "-q", "-r", run, "--epochs", "1000"])
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.npz").exists() or RunDir(run).checkpoint.read_state().step < epoch_steps():
            assert chief.poll() is None and time.monotonic() < deadline, chief.stderr.read()
            time.sleep(0.1)
        worker.send_signal(signal.SIGINT)  # not the chief: it still saves, once they agree
        results = finish([chief, worker], timeout=60)
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
    assert [code for code, _, _ in results] == [130, 130], results
    stops = [err.strip().splitlines()[-1] for _, _, err in results]
    assert stops[0] == stops[1] and stops[0].startswith("stopped at step "), stops
    step = int(stops[0].split()[3].rstrip(";").replace(",", ""))
    assert RunDir(run).checkpoint.read_state().step == step


# --- choices that cannot work ----------------------------------------------------------------------


def test_spread_options_that_cannot_work_are_one_line_errors(runner, corpus_file, tmp_path, monkeypatch):
    base = ["train", corpus_file, "-r", tmp_path / "run", *TINY_FLAGS, "-q"]
    cases = [
        (["--strategy", "mirrored"], "needs --replicas N"),
        (["--strategy", "one", "--replicas", "2"], "--replicas goes with --strategy mirrored"),
        (["--strategy", "multi-worker"], "needs TF_CONFIG"),
        (["--kernel", "cudnn"], "--kernel cudnn needs an NVIDIA GPU"),
    ]
    for flags, fragment in cases:
        assert_error(invoke(runner, [*base, *flags]), 2, fragment)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert_error(invoke(runner, base), 2, "TF_CONFIG is not a valid cluster description")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}))
    assert_error(invoke(runner, base), 2, "is not one of its cluster's members")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_replicas_is_refused(corpus_file, tmp_path):
    result = run_charrnn("train", corpus_file, "-r", tmp_path / "run", *TINY_FLAGS[:-1], "5", "--strategy", "mirrored", "--replicas", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --batch-size 5 does not split evenly over 2 replicas; use a multiple of 2 "
        "(it is the global batch, whatever the replicas)"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_every_kernel_gives_the_numpy_samplers_logits_and_the_same_step(cell):
    """fused (fastrnn), keras (no cuDNN) and cudnn (Keras's layers as a GPU builds them; on a CPU
    Keras falls back to its generic loop, the only part a CPU cannot check is cuDNN itself):
    the same logits as the NumPy sampler, the same gradients, evaluation and training loss. (The
    weights after an Adam step are not compared: its first step is about lr * sign(gradient), so
    float noise in a near-zero gradient flips it.)"""
    from charrnn import cells, config, data, model as model_lib
    from charrnn.backend import import_tensorflow
    from charrnn.numpynet import NumpyRNN
    from charrnn.train.build import global_clip_adam
    from charrnn.train.forward import RecurrenceKernel as Kernel
    from charrnn.train.steps import build_steps

    tf = import_tensorflow()
    import keras

    cfg = config.ModelConfig(model=cell, layers=2, units=6, embedding_dim=4, vocab_size=9)
    rng = np.random.default_rng(7)
    text = rng.integers(0, 9, 400).astype(np.uint8)
    starts = np.arange(0, 40 * 8, 40)
    weights = None
    results = {}
    for name in ("fused", "keras", "cudnn"):
        kernel = Kernel(name)
        model = model_lib.build_model(cfg, use_cudnn=kernel.use_cudnn)
        if weights is None:
            weights = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]
        model.set_weights(weights)
        optimizer = global_clip_adam(keras, tf, 0.01, 1.0)
        optimizer.build(model.trainable_variables)
        step, evaluator = build_steps(tf, tf.distribute.get_strategy(), model, cfg, optimizer, kernel, text, 10)
        x, y = data.windows(text, starts, 10)
        with tf.GradientTape() as tape:
            logits = step.forward.logits_of(tf.constant(x), training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]
        train_loss, gradient_norm = step.train(starts)
        # The norm the step reports is the global norm of the gradient, before clipping.
        assert abs(gradient_norm - float(tf.linalg.global_norm(grads))) < 1e-4, name
        results[name] = (logits.numpy(), grads, evaluator.mean_loss(x, y), train_loss)
        assert not np.allclose(model.get_weights()[-1], weights[-1])  # the step changed the weights

    sampler = NumpyRNN(cfg, dict(zip(cells.weight_names(cfg), weights)))
    state = sampler.initial_state(len(starts))
    expected = []
    for t in range(10):
        step_logits, state = sampler.step(x[:, t], state)
        expected.append(step_logits)
    expected = np.stack(expected, axis=1)
    fused = results["fused"]
    for name, (logits, grads, mean_loss, loss) in results.items():
        np.testing.assert_allclose(logits, expected, atol=1e-5, err_msg=name)
        for got, want in zip(grads, fused[1]):
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
        assert abs(mean_loss - fused[2]) < 1e-5 and abs(loss - fused[3]) < 1e-5, name
