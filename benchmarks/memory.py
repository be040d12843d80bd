"""The memory estimate (charrnn.sizing.training_bytes) against the peak resident memory measured.

    python benchmarks/memory.py                          # vocabularies of 65, 6,000 and 80,000
    python benchmarks/memory.py --vocab 65,6000 --max-time 40 --output-layer full

For each vocabulary size, a synthetic text of --chars characters (Zipf-distributed code points,
each of the vocabulary's characters at least once) is trained on by `charrnn train` in a child
process, default settings otherwise, for --max-time seconds (compiling, the evaluations and the
checkpoints included: the whole run's peak; measured at 6,000 characters, 60 s reach the peak of
5 minutes, 1,586 MiB, and 20 s, before the first evaluation, miss it: 1,338 MiB). The measured figure is that child's ru_maxrss
(os.wait4), the peak resident memory of the whole run; beside it, its peak virtual size (VmPeak,
read from /proc while it runs) against sizing.address_space_bytes, which a `ulimit -v` is
compared with. The first row is a child that imports TensorFlow as charrnn does and nothing more.

Prints a table to stdout (vocab, estimate, measured peak, ratio, and the same for the address
space); progress goes to stderr. Takes about 12 minutes on a 2-core CPU, most of it evaluating the
80,000-character model (a smaller --val-fraction shortens that; the peak hardly changes).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from charrnn import sizing, softmax
from charrnn.config import ModelConfig, TrainConfig

# Code points for the synthetic alphabets: printable ASCII first (a text of 65 characters is
# English-like), then from U+00A1 on, without the surrogates (not encodable) and the C1 controls.
FIRST_WIDE = 0xA1
SURROGATES = range(0xD800, 0xE000)
IMPORT_ONLY = "from charrnn.backend import import_tensorflow; import_tensorflow()"


def alphabet(vocab_size):
    """`vocab_size` distinct characters: newline, space and the printable ASCII, then wider."""
    chars = ["\n"] + [chr(c) for c in range(0x20, 0x7F)]
    code = FIRST_WIDE
    while len(chars) < vocab_size:
        if code not in SURROGATES:
            chars.append(chr(code))
        code += 1
    return chars[:vocab_size]


def synthetic_text(vocab_size, num_chars, seed=0):
    """A text of `num_chars` characters drawn from a Zipf law (exponent 1.1) over `vocab_size`
    characters, each of which occurs at least once."""
    rng = np.random.default_rng(seed)
    chars = np.array(alphabet(vocab_size))
    weights = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    drawn = rng.choice(vocab_size, size=num_chars - vocab_size, p=weights / weights.sum())
    ids = np.concatenate([np.arange(vocab_size), drawn])
    rng.shuffle(ids)
    return "".join(chars[ids])


def peak_rss(argv):
    """(exit status, peak resident bytes, peak virtual bytes, seconds) of a child process running
    `argv`: its ru_maxrss (os.wait4), and its VmPeak as last read from /proc while it ran."""
    started = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    virtual = [0]
    threading.Thread(target=_watch_vmpeak, args=(child, virtual), daemon=True).start()
    errors = child.stderr.read().decode(errors="replace").strip().splitlines()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        print(f"  exit {child.returncode}: {errors[-1] if errors else ''}", file=sys.stderr)
    return child.returncode, usage.ru_maxrss * 1024, virtual[0], time.monotonic() - started  # Linux: KiB


def _watch_vmpeak(child, virtual):
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status", encoding="ascii") as f:
                virtual[0] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmPeak:"))
        except (OSError, StopIteration, ValueError):
            pass
        time.sleep(0.2)


def measure(vocab_size, args, work):
    """A table row: (vocab, estimate, peak, address-space estimate, virtual peak, exit, seconds)."""
    corpus = work / f"vocab{vocab_size}.txt"
    corpus.write_text(synthetic_text(vocab_size, args.chars), encoding="utf-8")
    model_cfg = ModelConfig(vocab_size=vocab_size)
    model_cfg.output_layer, model_cfg.tails = softmax.choose(args.output_layer, vocab_size, model_cfg.units)
    train_cfg = TrainConfig(val_fraction=args.val_fraction)
    argv = [
        sys.executable, "-m", "charrnn", "train", str(corpus), "-r", str(work / f"run{vocab_size}"), "-q",
        "--max-time", args.max_time, "--output-layer", args.output_layer, "--val-fraction", str(args.val_fraction),
    ]
    print(f"training on {vocab_size:,} distinct characters ...", file=sys.stderr, flush=True)
    code, peak, virtual, seconds = peak_rss(argv)
    estimates = sizing.training_bytes(model_cfg, train_cfg), sizing.address_space_bytes(model_cfg, train_cfg)
    return f"{vocab_size:,}", estimates[0], peak, estimates[1], virtual, code, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default="65,6000,80000", help="comma-separated vocabulary sizes")
    parser.add_argument("--chars", type=int, default=600_000, help="characters of each synthetic text")
    parser.add_argument("--max-time", default="60s", help="each training's --max-time")
    parser.add_argument("--output-layer", default="full", help="each training's --output-layer")
    parser.add_argument("--val-fraction", type=float, default=TrainConfig().val_fraction,
                        help="each training's --val-fraction (less: shorter evaluations, the same peak)")
    args = parser.parse_args()
    code, fixed, virtual, seconds = peak_rss([sys.executable, "-c", IMPORT_ONLY])
    rows = [("TF imported", None, fixed, None, virtual, code, seconds)]
    with tempfile.TemporaryDirectory(prefix="charrnn-memory-") as tmp:
        for vocab_size in (int(v) for v in args.vocab.split(",")):
            rows.append(measure(vocab_size, args, Path(tmp)))
    heads = ("vocab", 12), ("estimate", 10), ("peak RSS", 10), ("ratio", 6), ("AS estimate", 12), ("VmPeak", 10), ("ratio", 6)
    print(" ".join(f"{name:>{width}}" for name, width in heads), f"{'exit':>5} {'seconds':>8}")
    for vocab, estimate, peak, virtual_estimate, virtual, code, seconds in rows:
        print(f"{vocab:>12} {_mb(estimate):>10} {_mb(peak):>10} {_ratio(estimate, peak):>6} {_mb(virtual_estimate):>12} "
              f"{_mb(virtual):>10} {_ratio(virtual_estimate, virtual):>6} {code:>5} {seconds:>8.0f}")


def _ratio(estimate, measured):
    return "" if estimate is None or not measured else f"{estimate / measured:.2f}"


def _mb(size):
    return "" if size is None else f"{size / 2**20:,.0f} MiB"


if __name__ == "__main__":
    main()
