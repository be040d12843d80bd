"""Markup to paragraphs for the benchmark corpora: XHTML pages and man pages (through groff),
Chinese line breaks handled as a browser and a Chinese reader expect; running the tools."""

import gzip
import html.parser
import os
import re
import subprocess
import unicodedata

BOX_RULE = re.compile("^[\u2500-\u257f ]+$")  # a table's ruled line, as tbl draws it
BAR = " \u2502 "  # a table's column rule, or a change bar in the margin
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")

# HTML: elements whose text is left out; those that end a paragraph, a line, a table cell.
SKIP_CLASSES = {"navheader", "navfooter", "toc", "list-of-tables"}
SKIP_TAGS = {"head", "script", "style"}
BLOCK_TAGS = {"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "table", "blockquote", "caption",
              "h1", "h2", "h3", "h4", "h5", "h6", "pre"}
# What each tag's start ends. A table is a paragraph, a row a line, its cells separated by tabs.
ENDS = {**dict.fromkeys(BLOCK_TAGS, "_end_paragraph"), "br": "_end_line", "tr": "_end_line",
        "td": "_end_cell", "th": "_end_cell"}
# man macros that, given no arguments (.TP: always), apply to the next input line.
NEXT_LINE_REQUESTS = set("TP TQ SH SS B I BI BR IB IR RB RI SM SB".split())


class CorpusError(Exception):
    """A corpus could not be built; the message is the one line the user sees."""


def wide(char):
    """True for a character that East Asian text sets without spaces around it."""
    return unicodedata.east_asian_width(char) in "WF"


def collapse(text):
    """Whitespace runs become one space; a line break between two wide characters goes away,
    as browsers do (CSS Text 3: segment breaks between East Asian characters)."""
    def one(match):
        start, end = match.span()
        between = "\n" in match.group() and 0 < start and end < len(text)
        return "" if between and wide(text[start - 1]) and wide(text[end]) else " "
    return re.sub(r"\s+", one, text).strip()


class HTMLText(html.parser.HTMLParser):
    """The paragraphs of an XHTML page: text only, entities decoded, `<pre>` lines kept."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs = []
        self._lines = []  # the open paragraph's finished lines
        self._cells = []  # the open line's finished table cells
        self._chunks = []  # the open cell's text
        self._open = []  # the open elements, each as (tag, whether its text is left out)

    def _skipping(self):
        return any(skipped for _, skipped in self._open)

    def _in_pre(self):  # a <pre>'s lines are kept as they are
        return any(tag == "pre" for tag, _ in self._open)

    def _end_cell(self):
        if not self._in_pre():
            self._cells += [cell for cell in [collapse("".join(self._chunks))] if cell]
            self._chunks = []

    def _end_line(self):
        self._end_cell()
        self._lines += ["\t".join(self._cells)] if self._cells else []
        self._cells = []

    def _end_paragraph(self):
        if self._in_pre():
            lines = [line.rstrip() for line in "".join(self._chunks).splitlines()]
            self._chunks = []
        else:
            self._end_line()
            lines = self._lines
        self._lines = []
        text = "\n".join(lines).strip("\n")
        self.paragraphs.extend(p for p in PARAGRAPH_BREAK.split(text) if p.strip())

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        if tag in ENDS and not self._skipping():
            getattr(self, ENDS[tag])()
        # An element never closed (<br>, <img>) is taken off when the one around it closes.
        self._open.append((tag, tag in SKIP_TAGS or bool(classes & SKIP_CLASSES)))

    def handle_endtag(self, tag):
        if tag not in (open_tag for open_tag, _ in self._open):
            return
        if not self._skipping() and tag in BLOCK_TAGS:
            self._end_paragraph()
        while self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if not self._skipping():
            self._chunks.append(data)

    def close(self):
        super().close()
        self._end_paragraph()


def html_paragraphs(path):
    """The paragraphs of one HTML page of the Debian Reference."""
    parser = HTMLText()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()  # the last paragraph ends
    return parser.paragraphs


def join_wide_lines(source):
    """Troff source with a filled text line that ends in a wide character joined to the next
    one if it starts with one: groff would put a space there, which Chinese does not have.
    A line that is a request's argument (the tag after `.TP`, the heading after a bare `.SH`)
    is never joined to."""
    out, filling, joinable, argument = [], True, False, False
    for line in source.splitlines():
        request = line[:1] in (".", "'")
        if request:
            words = line[1:].split() or [""]
            filling = {"nf": False, "EX": False, "fi": True, "EE": True}.get(words[0], filling)
            argument = words[0] in NEXT_LINE_REQUESTS and (len(words) == 1 or words[0] == "TP")
        elif joinable and line and wide(out[-1][-1]) and wide(line[0]):
            out[-1] += line
            continue
        out.append(line)
        joinable = not request and filling and bool(line) and not argument
        argument = request and argument
    return "\n".join(out) + "\n"


def man_paragraphs(path):
    """The paragraphs of one gzipped man page as `man` shows it, less its header and footer."""
    try:
        source = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path.name} is not a gzipped UTF-8 man page: {error}")
    # Lines as long as a paragraph (no wrapping, no hyphenation), no bold or underlining.
    command = ["groff", "-k", "-Kutf8", "-t", "-man", "-Tutf8", "-P-cbou", "-rLL=10000n", "-rHY=0"]
    shown = run(command, input=join_wide_lines(source).encode())
    lines = [" ".join(line.split()) for line in shown.splitlines()]
    # tbl's rules go, its cells are separated by tabs (as in the HTML); Tcl's change bars go.
    lines = [line.strip(BAR).replace(BAR, "\t") for line in lines if not BOX_RULE.match(line)]
    body = [i for i, line in enumerate(lines) if line]
    text = "\n".join(lines[body[0] + 1:body[-1]]) if len(body) > 2 else ""
    return [p.strip("\n") for p in PARAGRAPH_BREAK.split(text) if p.strip()]


def run(command, cwd=None, input=None):
    """A command's output (UTF-8), or one line saying why it failed."""
    env = dict(os.environ, LC_ALL="C.UTF-8")
    try:
        done = subprocess.run(command, cwd=cwd, input=input, env=env, capture_output=True,
                              check=True)
    except FileNotFoundError:
        raise CorpusError(f"{command[0]} is not installed: the zh corpus needs it")
    except subprocess.CalledProcessError as error:
        last = (error.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise CorpusError(f"{' '.join(command[:2])} failed: {last}")
    return done.stdout.decode("utf-8").strip()
