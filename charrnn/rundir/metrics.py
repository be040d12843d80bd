"""The run's metrics log: one JSON object per evaluation, one per line, appended with a single
write each; a torn last line (a crash mid-write) is dropped when read."""

import contextlib
import json

from charrnn.checks import is_int
from charrnn.errors import RunDirError
from charrnn.rundir import messages
from charrnn.rundir.layout import METRICS


class MetricsStore:
    def __init__(self, files):
        self._files = files

    def append(self, row):
        """Appends one JSON line with a single write, so a kill cannot leave half a line behind."""
        self._files.append_line(METRICS, (json.dumps(row) + "\n").encode())

    def trim(self, last_step):
        """Keeps the metric rows up to `last_step` (a resume redoes the steps after it) and drops a
        torn last line."""
        if not self._files.writes:
            return
        rows = [row for row in self.read() if row["step"] <= last_step]
        self._files.write_bytes(METRICS, "".join(json.dumps(row) + "\n" for row in rows).encode())

    def read(self):
        """The metric rows. A torn last line (a crash mid-write) is dropped; any other line that is
        not a JSON object with an integer step is an error naming the file and the line."""
        path = self._files.file(METRICS)
        text = self._files.read_text(METRICS, missing_ok=True, fix=messages.METRICS_FIX)
        if text is None:
            return []
        lines = text.split("\n")
        # A last line without its newline was cut short by a crash; nothing after it was lost.
        torn = lines.pop()
        rows = []
        for number, line in enumerate(lines, 1):
            row = _row(line)
            if row is None:
                raise RunDirError(messages.corrupt(path, f"line {number} is not a metrics row", messages.METRICS_FIX))
            rows.append(row)
        if torn.strip():
            row = _row(torn)
            if row is not None:
                rows.append(row)
        return rows


def _row(line):
    """The metrics row on `line`, or None if it is not a JSON object with an integer step."""
    row = None
    with contextlib.suppress(ValueError, RecursionError):
        row = json.loads(line)
    return row if isinstance(row, dict) and is_int(row.get("step")) else None
