"""Issue 24's sweep: `charrnn train CORPUS --max-time 110s` with one change from the defaults per
row, each row trained RUNS times one after the other, and a table of every row.

    python benchmarks/sweep.py --work-dir DIR                       # every candidate, once
    python benchmarks/sweep.py --work-dir DIR --runs 3 default lr8  # some of them, three times each

The figures per run are nanoGPT's protocol (the best windowed validation loss over the run's
evaluations) and the state-carried loss beside it (the best carried loss), with the steps and the
steady training chars/s. A row that a run directory already holds (DIR/NAME-K with a finished
metrics.jsonl) is read, not trained again, so a sweep can be extended and its table printed again.
Never run it while anything else is running: the rows are compared with each other.
"""

import argparse
import statistics
import sys
from pathlib import Path

import bench

# (name, flags): each a change from the defaults (GRU 256x1, embedding 64, batch 32, seq 100,
# peak learning rate 6e-3, Adam's beta2 0.999, no dropout of either kind, every window from a zero
# state).
CANDIDATES = (
    ("default", []),
    ("lr8", ["--learning-rate", "8e-3"]),
    ("lr10", ["--learning-rate", "1e-2"]),
    ("lr4", ["--learning-rate", "4e-3"]),
    ("batch64-lr8", ["--batch-size", "64", "--learning-rate", "8e-3"]),
    ("batch64-lr12", ["--batch-size", "64", "--learning-rate", "1.2e-2"]),
    ("batch16-lr4", ["--batch-size", "16", "--learning-rate", "4e-3"]),
    ("seq150", ["--seq-length", "150"]),
    ("seq64", ["--seq-length", "64"]),
    ("emb32", ["--embedding-dim", "32"]),
    ("emb128", ["--embedding-dim", "128"]),
    ("units192-lr8", ["--units", "192", "--learning-rate", "8e-3"]),
    ("units320", ["--units", "320"]),
    ("dropout0.1", ["--dropout", "0.1"]),
    ("layers2-192", ["--layers", "2", "--units", "192"]),
    ("lstm", ["--model", "lstm"]),
    ("beta2-0.99", ["--adam-beta2", "0.99"]),
    ("beta2-0.99-lr8", ["--adam-beta2", "0.99", "--learning-rate", "8e-3"]),
    ("rdrop0.1", ["--recurrent-dropout", "0.1"]),
    ("rdrop0.2", ["--recurrent-dropout", "0.2"]),
    ("lr8-dropout0.1", ["--learning-rate", "8e-3", "--dropout", "0.1"]),
    ("lr8-rdrop0.1", ["--learning-rate", "8e-3", "--recurrent-dropout", "0.1"]),
    ("wd0.1-lr8-d0.1", ["--weight-decay", "0.1", "--learning-rate", "8e-3", "--dropout", "0.1"]),
    # third pass, from the adopted 110 s defaults (the rule's dropout 0.1 and lr 0.008, weight decay 0.1)
    ("now", []),
    ("now-d0.15", ["--dropout", "0.15"]),
    ("now-d0.2", ["--dropout", "0.2"]),
    ("now-wd0.2", ["--weight-decay", "0.2"]),
    ("now-lr10", ["--learning-rate", "1e-2"]),
    ("now-beta2-0.99", ["--adam-beta2", "0.99"]),
    ("now-eval55", ["--eval-every", "55s"]),
    ("now-final0", ["--final-lr-fraction", "0"]),
    ("now-linear0", ["--lr-decay", "linear", "--final-lr-fraction", "0"]),
    ("now-linear0-lr10", ["--lr-decay", "linear", "--final-lr-fraction", "0", "--learning-rate", "1e-2"]),
    # for the 20-minute budget (--seconds 1200, another --work-dir), where the size rule picks GRU-512,
    # dropout 0.2
    ("wd0.1", ["--weight-decay", "0.1"]),
    ("dropout0.4", ["--dropout", "0.4"]),
    ("layers2-d0.3", ["--layers", "2", "--dropout", "0.3"]),
    ("rdrop0.15", ["--recurrent-dropout", "0.15"]),
    ("rdrop0.25", ["--recurrent-dropout", "0.25"]),
    ("rdrop0.25-d0.3", ["--recurrent-dropout", "0.25", "--dropout", "0.3"]),
    # the rule's 20 epochs end at 12 of the 20 minutes: more, so that the time budget ends the run
    ("epochs60", ["--epochs", "60"]),
    ("epochs60-rdrop0.25", ["--epochs", "60", "--recurrent-dropout", "0.25"]),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="the candidates to run (default: all)")
    parser.add_argument("--corpus", default=str(bench.DEFAULT_CORPUS))
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--seconds", type=int, default=110)
    parser.add_argument("--runs", type=int, default=1, help="runs per candidate (different --random-seed)")
    parser.add_argument("--extra", default="", help="flags added to every row (e.g. '--max-time 20m' rows use --seconds)")
    args = parser.parse_args()
    known = dict(CANDIDATES)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    b = bench.Bench(Path(args.corpus), args.work_dir, bench.FULL, False, None)
    rows = []
    for name in args.names or list(known):
        runs = [train_once(b, name, known[name] + args.extra.split(), args.seconds, k) for k in range(args.runs)]
        rows.append((name, known[name], runs))
        print_table(rows, args.seconds, sys.stderr)
    print_table(rows, args.seconds, sys.stdout)


def train_once(b, name, flags, seconds, k):
    """The figures of run k of a candidate, trained unless its run directory has them already."""
    run_name = f"{name}-{k}"
    run_dir = b.work_dir / run_name
    rows = bench.read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    if not rows or not (b.work_dir / f"{run_name}.done").is_file():
        bench.log(f"sweep: {run_name}: {' '.join(flags) or 'defaults'} for {seconds} s")
        run_dir, _ = b.train(run_name, b.corpus, [*flags, "--random-seed", str(k)], seconds)
        (b.work_dir / f"{run_name}.done").touch()
        rows = bench.read_metrics(run_dir)
    return {
        "windowed": min(r["val_loss"] for r in rows),
        "carried": min(r.get("val_loss_carried", r["val_loss"]) for r in rows),
        "steps": rows[-1]["step"],
        "chars_per_s": bench.steady_chars_per_s(rows),
    }


def print_table(rows, seconds, out):
    print(f"\n| candidate | flags | best windowed val loss at {seconds} s (each run) | median | carried (median) | steps | training chars/s |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for name, flags, runs in rows:
        windowed = [r["windowed"] for r in runs]
        speeds = [r["chars_per_s"] for r in runs if r["chars_per_s"]]
        print(f"| {name} | `{' '.join(flags) or 'defaults'}` | {' / '.join(f'{w:.4f}' for w in windowed)} | "
              f"**{statistics.median(windowed):.4f}** | {statistics.median(r['carried'] for r in runs):.4f} | "
              f"{statistics.median(r['steps'] for r in runs):,.0f} | {statistics.median(speeds) if speeds else 0:,.0f} |", file=out, flush=True)


if __name__ == "__main__":
    main()
