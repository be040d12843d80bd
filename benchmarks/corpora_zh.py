"""The zh benchmark corpus: Chinese verse and classical prose (fortunes-zh) interleaved with
modern technical prose (the Debian Reference, the man pages), about 1.1 million characters.

Each package gives paragraphs in its own order, Chinese ones only (with a Han character):
- fortunes-zh: each fortune of `chinese`, `tang300` and `song100` (colour escapes removed) is a
  paragraph. Fortunes with a no-break space or a box-drawing character are w3m's renderings of
  Debian web pages (mostly the Debian Reference, which comes from its own package): left out.
  The files are grouped by kind (菜根谭, 论语, 宋词, 诗经, 谚语...; Tang poems by form), so the
  fortunes are dealt like cards into ten piles, one after the other: every tenth of them has
  every kind.
- debian-reference-zh-cn: the HTML pages as text, in file order.
- manpages-zh: the simplified-Chinese man pages as `man` shows them, in sorted order.
The packages take turns, a block of about BLOCK_CHARS characters at a time, the turn always
going to the one that has used the smallest share of its quota. The first two have their whole
text as quota, the man pages what is left of the budget, so each runs through the whole corpus
(the budget ends just before the first two's last paragraphs) and the validation tenth (the
last 10%) holds the same mix as the rest.
"""

import re

from corpora_markup import CorpusError, html_paragraphs, man_paragraphs, run

PACKAGES = ("fortunes-zh", "debian-reference-zh-cn", "manpages-zh")
ZH_CHARS = 1_100_000
BLOCK_CHARS = 2_000
PILES = 10
FORTUNE_FILES = ("chinese", "tang300", "song100")
HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b")  # the fortunes' colours
RENDERED = re.compile("[\xa0\u2500-\u257f]")  # w3m's indents, ruled tables and frames


def fetch_debs(deb_dir):
    """Each package's .deb in deb_dir, downloaded there with apt-get if it is not there."""
    debs = {}
    for name in PACKAGES:
        if not list(deb_dir.glob(f"{name}_*.deb")):
            run(["apt-get", "download", name], cwd=deb_dir)
        found = sorted(deb_dir.glob(f"{name}_*.deb"))
        if len(found) != 1:
            raise CorpusError(f"expected one {name}_*.deb in {deb_dir}, found {len(found)}")
        debs[name] = found[0]
    return debs


def fortunes(root):
    """(file, fortune) of fortunes-zh, dealt into PILES piles, and how many were left out."""
    kept, rendered = [], 0
    for name in FORTUNE_FILES:
        path = root / "usr/share/games/fortunes" / name
        try:
            text = ESCAPE.sub("", path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise CorpusError(f"fortunes-zh: cannot read {name}: {error}")
        for chunk in re.split(r"^%\n", text, flags=re.M):
            fortune = "\n".join(line.rstrip() for line in chunk.splitlines()).strip("\n")
            if RENDERED.search(fortune):
                rendered += 1
            elif fortune:
                kept.append((path.relative_to(root), fortune))
    return [item for pile in range(PILES) for item in kept[pile::PILES]], rendered


def reference(root):
    """(file, paragraph) of the Debian Reference's HTML pages, in file order."""
    for path in sorted((root / "usr/share/debian-reference").glob("*.html")):
        for paragraph in html_paragraphs(path):
            yield path.relative_to(root), paragraph


def man_pages(root):
    """(file, paragraph) of the simplified-Chinese man pages, as `man` shows them, read lazily."""
    man = root / "usr/share/man/zh_CN"
    files = sorted((p for p in man.glob("man*/*") if p.is_file() and not p.is_symlink()),
                   key=lambda p: p.relative_to(man).parts)
    for path in files:
        for paragraph in man_paragraphs(path):
            yield path.relative_to(root), paragraph


def interleave(streams, quotas, budget):
    """(stream index, (file, paragraph)) in corpus order: blocks of about BLOCK_CHARS characters,
    each from the stream that has used the smallest share of its quota, until the next
    paragraph would take the text past budget characters (paragraphs one blank line apart)."""
    used, ended, size = [0] * len(streams), [False] * len(streams), -1
    while not all(ended):
        turn = min((i for i in range(len(streams)) if not ended[i]),
                   key=lambda i: used[i] / quotas[i])
        block = 0
        while block < BLOCK_CHARS:
            item = next(streams[turn], None)
            if item is None:
                ended[turn] = True
                break
            cost = len(item[1]) + 2
            if size + cost > budget:
                return
            yield turn, item
            size, block, used[turn] = size + cost, block + cost, used[turn] + cost


def chinese(items, dropped):
    """The items whose paragraph has a Han character; the others counted in dropped[0]."""
    for item in items:
        if HAN.search(item[1]):
            yield item
        else:
            dropped[0] += 1


def build_zh(deb_dir, work):
    """The Chinese corpus's text and the lines that say what went into it."""
    debs = fetch_debs(deb_dir)
    roots = {name: work / name for name in PACKAGES}
    for name in PACKAGES:
        run(["dpkg-deb", "-x", str(debs[name]), str(roots[name])])
    dropped = [0]
    dealt, rendered = fortunes(roots["fortunes-zh"])
    fixed = [list(chinese(dealt, dropped)),
             list(chinese(reference(roots["debian-reference-zh-cn"]), dropped))]
    quotas = [sum(len(p) + 2 for _, p in items) for items in fixed]
    quotas.append(max(ZH_CHARS - sum(quotas), 1))
    streams = [iter(items) for items in fixed] + [chinese(man_pages(roots["manpages-zh"]), dropped)]
    kept = list(interleave(streams, quotas, ZH_CHARS))
    notes = []
    for i, name in enumerate(PACKAGES):
        version = run(["dpkg-deb", "-f", str(debs[name]), "Version"])
        files = [path for turn, (path, _) in kept if turn == i]
        notes.append(f"{name} {version}: {len(files):,} paragraphs from {len(set(files))} files, "
                     f"{sum(len(p) for turn, (_, p) in kept if turn == i):,} characters, "
                     f"the last from {files[-1] if files else '-'}")
    blocks = sum(1 for j in range(len(kept)) if j == 0 or kept[j][0] != kept[j - 1][0])
    notes.append(f"{blocks:,} blocks of about {BLOCK_CHARS:,} characters in turn; fortunes dealt "
                 f"into {PILES} piles; {rendered:,} fortunes left out as renderings of web pages, "
                 f"{dropped[0]:,} paragraphs without a Chinese character; "
                 f"{run(['groff', '--version']).splitlines()[0]}")
    return "\n\n".join(paragraph for _, (_, paragraph) in kept) + "\n", notes
