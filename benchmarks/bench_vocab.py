"""bench.py's `vocab` section: each output layer on Chinese prose, Python source and tiny
Shakespeare, trained one after the other in the same run for the same time (3 minutes), so that
the ratios between them hold on any machine.

    python benchmarks/bench.py --only vocab --corpora-dir DIR

DIR holds zh.txt and code.txt, or they are built there by benchmarks/corpora.py (the Chinese text
needs `apt-get download`; the code text is the .py files of the Python running the benchmark).
Per run: the training chars/s (steady, and over the whole run with its evaluations), the best
carried validation loss, and the evaluations' seconds against training's. The vocabulary cap is
simulated in the text: the characters outside the commonest CAP of the training part become one
symbol, so that run's loss is not comparable (it predicts one symbol for all the rare ones); its
speed is.
"""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import bench

CAP = 1024
UNKNOWN = "\ufffd"
# (name, corpus file or None for the section's main corpus, extra flags): the first is the reference
# every ratio is taken against.
RUNS = (
    ("shakespeare", None, []),
    ("zh-full", "zh.txt", ["--output-layer", "full"]),
    ("zh-adaptive", "zh.txt", []),
    ("zh-cap", f"zh-cap{CAP}.txt", []),
    ("code-full", "code.txt", ["--output-layer", "full"]),
    ("code-adaptive", "code.txt", []),
)


def bench_vocab(b):
    seconds = b.durations["vocab_s"]
    corpora = Path(b.corpora_dir or b.work_dir)
    figures = {}
    chosen = getattr(b, "vocab_runs", None)  # --vocab-runs: some of the runs (the first always)
    runs = [run for run in RUNS if not chosen or run[0] == RUNS[0][0] or run[0] in chosen]
    # every text is built first, so that a failed build costs no training
    paths = {name: b.corpus if corpus is None else ensure_corpus(corpora, corpus) for name, corpus, _ in runs}
    for name, _, extra in runs:
        path = paths[name]
        bench.log(f"vocab: training {name} on {path.name} for {seconds} s")
        run_dir, wall = b.train(f"vocab-{name}", path, extra, seconds)
        figures[name] = measure(b, run_dir, wall)
        add_run(b, name, figures[name], seconds)
    b.details["vocab"] = figures
    add_ratios(b, figures)


def add_ratios(b, figures):
    """The issue's same-run figures, for the texts whose runs ran."""
    english = figures["shakespeare"]["steady_chars_per_s"]
    for text, key in (("zh", "vocab_zh_ratio"), ("code", "vocab_code_ratio")):
        if f"{text}-adaptive" in figures:
            full = figures.get(f"{text}-full")
            note = f"full softmax: {full['steady_chars_per_s'] / english:.3f}" if full else ""
            b.add("vocab", f"{text}, default output layer: chars/s / tiny Shakespeare's",
                  round(figures[f"{text}-adaptive"]["steady_chars_per_s"] / english, 3), "", key=key, note=note)
    if "zh-full" in figures and "zh-adaptive" in figures:
        gain = figures["zh-full"]["best_carried"] - figures["zh-adaptive"]["best_carried"]
        b.add("vocab", "zh: carried val loss, full softmax minus default", round(gain, 4), "nats/char",
              key="vocab_zh_gain", comparable=False)


def ensure_corpus(corpora, name):
    """The corpus file `name` under `corpora`, built when missing."""
    path = corpora / name
    if path.is_file():
        return path
    corpora.mkdir(parents=True, exist_ok=True)
    if name.startswith("zh-cap"):
        write_capped(ensure_corpus(corpora, "zh.txt"), path, CAP)
        return path
    kind = name.removesuffix(".txt")
    command = [sys.executable, str(Path(__file__).with_name("corpora.py")), kind, str(path)]
    if kind == "zh":
        command += ["--deb-dir", str(corpora / "debs")]
    bench.log(f"vocab: building {path} ({' '.join(command[2:])})")
    subprocess.run(command, check=True)
    return path


def write_capped(source, out, cap, val_fraction=0.1):
    """The text with every character outside the `cap` commonest of its training part (the first
    90%) replaced by one symbol."""
    text = source.read_text(encoding="utf-8")
    counts = Counter(text[: int(len(text) * (1 - val_fraction))])
    kept = {c for c, _ in counts.most_common(cap)}
    capped = "".join(c if c in kept else UNKNOWN for c in text)
    share = capped.count(UNKNOWN) / len(text)
    bench.log(f"vocab: {out.name}: {share:.1%} of the characters are outside the commonest {cap}")
    out.write_text(capped, encoding="utf-8")


def measure(b, run_dir, wall):
    info = bench.charrnn_info(b.charrnn, run_dir)
    rows = bench.read_metrics(run_dir)
    training_s = training_seconds(rows)
    eval_s = sum(row.get("eval_s", 0.0) for row in rows)
    last = rows[-1] if rows else {}
    return {
        "vocab_size": info["vocab_size"], "output_layer": info["output_layer"], "steps": info["steps"],
        "epochs": info["epochs_done"], "best_carried": info["best_val_loss"],
        "last_windowed": last.get("val_loss"), "val_chars_scored": last.get("val_chars_scored"),
        # without the first interval (compiling), unless there is only one
        "steady_chars_per_s": bench.steady_chars_per_s(rows) or (last["chars_seen"] / training_s if rows else None),
        "overall_chars_per_s": last["chars_seen"] / last["elapsed_s"] if rows else None,
        "training_s": training_s, "eval_s": eval_s, "evaluations": len(rows),
        "eval_share": eval_s / training_s if training_s else None, "wall_s": round(wall, 1),
    }


def training_seconds(rows):
    """Training's seconds, from each row's chars_per_s (training alone since the row before)."""
    seconds, before = 0.0, 0
    for row in rows:
        seconds += (row["chars_seen"] - before) / row["chars_per_s"]
        before = row["chars_seen"]
    return seconds


def add_run(b, name, f, seconds):
    layer = f["output_layer"]
    setup = f"{f['vocab_size']:,} distinct, {layer}"
    b.add("vocab", f"{name} ({setup}): training chars/s, steady", round(f["steady_chars_per_s"] or 0), "chars/s",
          note=f"{f['overall_chars_per_s']:,.0f} over the run with evaluations; {f['steps']} steps, {f['epochs']} epochs")
    loss_note = f"last windowed {f['last_windowed']}; {f['val_chars_scored']:,} validation chars scored"
    if name.endswith("-cap"):
        loss_note += f"; not comparable: the rare characters are one symbol ({CAP:,} kept)"
    b.add("vocab", f"{name}: best carried val loss after {seconds} s", f["best_carried"], "nats/char",
          note=loss_note, comparable=False)
    b.add("vocab", f"{name}: evaluation / training time", round(f["eval_share"], 3) if f["eval_share"] else None, "",
          key="vocab_zh_eval_share" if name == "zh-adaptive" else None,
          note=f"{f['evaluations']} evaluations, {f['eval_s']:.1f} s, against {f['training_s']:.1f} s of training")
