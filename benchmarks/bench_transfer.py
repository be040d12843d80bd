"""bench.py's `transfer` section: fine-tuning from a base run against training from zero weights,
on three small texts of different kinds, one after the other in the same run.

    python benchmarks/bench.py --only transfer --corpora-dir DIR

The base is the default model trained for transfer_base_s on modern English: every file of Debian's
`fortunes` package (quotations, jokes, definitions, aphorisms; about 2 MB) but the two the small
texts come from. The small texts, none of them in the base's corpus: verse (the first ~50 KB of
fortunes' songs-poems), technical prose (the GPL-3 text in /usr/share/common-licenses, from
base-files) and dialogue (fortunes' startrek). Each is trained
from the base at several peak learning rates for transfer_s, and from zero weights for transfer_s
and for transfer_long_s; the figure is the best carried validation loss (the last tenth).
"""

import io
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import bench
from charrnn.train.transfer import DEFAULTS

LICENCE = Path("/usr/share/common-licenses/GPL-3")
FORTUNES = "fortunes"  # the Debian package
VERSE_BYTES = 50_000
LEARNING_RATES = (1e-3, 2e-3, 6e-3)
SAMPLE_LENGTH = 3000
# Every run of a small text: the time ends it (20 epochs of 50 KB take seconds), evaluated often
# enough that its best weights are found before it overfits.
FLAGS = ["--epochs", "100000", "--eval-every", "5s"]


def bench_transfer(b):
    d = b.durations
    corpora = Path(b.corpora_dir or b.work_dir)
    texts = small_texts(corpora)
    base_text = base_corpus(corpora)
    log = bench.log
    log(f"transfer: training the base on {base_text.name} for {d['transfer_base_s']} s")
    base, _ = b.train("transfer-base", base_text, [], d["transfer_base_s"])
    before = digest_files(base)
    figures = {}
    for name, path in texts.items():
        row = figures[name] = {"chars": len(path.read_text(encoding="utf-8"))}
        for lr in LEARNING_RATES:
            log(f"transfer: {name}: fine-tuning at learning rate {lr:g} for {d['transfer_s']} s")
            run, _ = b.train(f"transfer-{name}-tuned-{lr:g}", path, ["--init-from", str(base), "--learning-rate", f"{lr:g}", *FLAGS], d["transfer_s"])
            row[f"tuned_{lr:g}"] = best_loss(b, run)
        for seconds in (d["transfer_s"], d["transfer_long_s"]):
            log(f"transfer: {name}: from zero weights for {seconds} s")
            run, _ = b.train(f"transfer-{name}-zero-{seconds}", path, FLAGS, seconds)
            row[f"zero_{seconds}"] = best_loss(b, run)
        row["new_chars"], row["sampled_share"], row["text_share"] = new_char_use(b, base, path, name)
        add_text(b, name, row, d)
    b.add("transfer", "base's files after every fine-tuning: unchanged", int(digest_files(base) == before), "1 = yes")
    b.details["transfer"] = figures


def small_texts(corpora):
    """{name: path} of the three small texts, written under `corpora` when missing."""
    corpora.mkdir(parents=True, exist_ok=True)
    texts = {"verse": corpora / "verse.txt", "licence": corpora / "licence.txt", "dialogue": corpora / "dialogue.txt"}
    if not all(p.is_file() for p in texts.values()):
        fortunes = fortunes_files(corpora / "debs")
        poems = fortunes["songs-poems"]
        texts["verse"].write_text(poems[: poems.rfind("\n", 0, VERSE_BYTES) + 1], encoding="utf-8")
        texts["dialogue"].write_text(fortunes["startrek"], encoding="utf-8")
        texts["licence"].write_text(LICENCE.read_text(encoding="utf-8"), encoding="utf-8")
    return texts


# The fortunes files the small texts are taken from: left out of the base's corpus.
HELD_OUT = ("songs-poems", "startrek")


def base_corpus(corpora):
    """The base's corpus: the fortunes files but HELD_OUT, in sorted order (written when missing)."""
    path = corpora / "fortunes-base.txt"
    if not path.is_file():
        files = fortunes_files(corpora / "debs")
        path.write_text("".join(files[name] for name in sorted(files) if name not in HELD_OUT), encoding="utf-8")
    return path


def fortunes_files(deb_dir):
    """{name: text} of the fortunes package's files (fetched with apt-get download)."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(deb_dir.glob(f"{FORTUNES}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", FORTUNES], cwd=deb_dir, check=True, capture_output=True)
        debs = sorted(deb_dir.glob(f"{FORTUNES}_*.deb"))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[-1])], check=True, capture_output=True).stdout
    found = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if member.isfile() and "/games/fortunes/" in member.name and not member.name.endswith(".dat"):
                found[Path(member.name).name] = archive.extractfile(member).read().decode("utf-8", errors="replace")
    return found


def best_loss(b, run_dir):
    return bench.charrnn_info(b.charrnn, run_dir)["best_val_loss"]


def new_char_use(b, base, path, name):
    """(the characters of the text the base never saw, their share of a sample of the fine-tuned
    run at the best learning rate, their share of the text)."""
    base_chars = set(base_corpus(Path(b.corpora_dir or b.work_dir)).read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    new = {c for c in set(text) if c not in base_chars}
    tuned = b.work_dir / f"transfer-{name}-tuned-{DEFAULTS['learning_rate']:g}"
    out = subprocess.run(b.charrnn + ["sample", "-r", str(tuned), "--length", str(SAMPLE_LENGTH), "--random-seed", "1"],
                         capture_output=True, text=True, check=True).stdout
    counts, text_counts = Counter(out), Counter(text)
    share = sum(counts[c] for c in new) / max(len(out), 1)
    return len(new), round(share, 4), round(sum(text_counts[c] for c in new) / len(text), 4)


def digest_files(run_dir):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(run_dir).rglob("*")) if p.is_file()}


def add_text(b, name, row, d):
    short, long_ = d["transfer_s"], d["transfer_long_s"]
    tuned = {lr: row[f"tuned_{lr:g}"] for lr in LEARNING_RATES}
    best_lr = min(tuned, key=tuned.get)
    for lr, loss in tuned.items():
        b.add("transfer", f"{name} ({row['chars']:,} chars): fine-tuned {short} s, learning rate {lr:g}", loss, "nats/char",
              comparable=False, note="best of the rates" if lr == best_lr else "")
    zero = min(row[f"zero_{short}"], row[f"zero_{long_}"])
    b.add("transfer", f"{name}: from zero weights, {short} s", row[f"zero_{short}"], "nats/char", comparable=False)
    b.add("transfer", f"{name}: from zero weights, {long_} s", row[f"zero_{long_}"], "nats/char", comparable=False)
    default = tuned[DEFAULTS["learning_rate"]]
    b.add("transfer", f"{name}: better from zero minus fine-tuned (default rate)", round(zero - default, 4), "nats/char",
          key="transfer_gain", comparable=False)
    b.add("transfer", f"{name}: {row['new_chars']} characters the base never saw: share of a sample", row["sampled_share"], "",
          note=f"{row['text_share']} of the text")
