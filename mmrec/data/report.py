"""Counting what ingestion read, kept, repaired and dropped, per file and per filter.

Every row that does not reach the output is accounted for here (never a silent drop); the
stage writes `IngestReport.to_dict()` as `ingest/report.json`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

MAX_EXAMPLES = 5


@dataclass
class FileReport:
    """Line-level accounting for one raw file."""

    path: str
    # A truncated/corrupt compressed file: False = an error naming the line reached (default);
    # True = keep the complete lines before the damage, counted (data.allow_truncated).
    allow_truncated: bool = False
    rows_read: int = 0  # non-blank lines (or CSV records) seen
    rows_parsed: int = 0  # rows that became a usable record
    failed: Counter = field(default_factory=Counter)  # reason -> count (row skipped)
    repaired: Counter = field(default_factory=Counter)  # reason -> count (row kept, fixed up)
    examples: list[dict[str, Any]] = field(default_factory=list)  # first few failures/repairs

    def fail(self, line: int | None, reason: str, detail: str = "", n: int = 1) -> None:
        """Count `n` skipped rows for `reason`; keep the first few as examples."""
        self.failed[reason] += n
        self._example(line, reason, detail)

    def repair(self, line: int | None, reason: str, detail: str = "", n: int = 1) -> None:
        """Count rows that were kept after a fix-up (e.g. invalid UTF-8 replaced)."""
        self.repaired[reason] += n
        self._example(line, reason, detail)

    def _example(self, line: int | None, reason: str, detail: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"file": self.path, "line": line, "reason": reason,
                                  "detail": detail[:200]})

    @property
    def rows_failed(self) -> int:
        return sum(self.failed.values())

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows_read": self.rows_read, "rows_parsed": self.rows_parsed,
                "rows_failed": self.rows_failed, "failed": dict(sorted(self.failed.items())),
                "repaired": dict(sorted(self.repaired.items())), "examples": self.examples}


@dataclass
class ReportEvents:
    """Stands in for a FileReport and records what it is told, to replay into the real one later.

    Lets parts of a file be read ahead or in worker processes while the FileReport ends up as a
    serial read leaves it: `replay` makes the same calls in the same order (the examples are
    the first few in call order). Picklable, so workers can return one.
    """

    allow_truncated: bool = False
    rows_read: int = 0
    events: list[tuple[str, Optional[int], str, str, int]] = field(default_factory=list)

    def fail(self, line: int | None, reason: str, detail: str = "", n: int = 1) -> None:
        """Record FileReport.fail."""
        self.events.append(("fail", line, reason, detail, n))

    def repair(self, line: int | None, reason: str, detail: str = "", n: int = 1) -> None:
        """Record FileReport.repair."""
        self.events.append(("repair", line, reason, detail, n))

    def drain(self) -> "ReportEvents":
        """What was recorded so far, as a new object; this one starts empty again."""
        out = ReportEvents(self.allow_truncated, self.rows_read, self.events)
        self.rows_read, self.events = 0, []
        return out

    def replay(self, rep: FileReport, until_line: Optional[int] = None) -> None:
        """Make the recorded calls on `rep` (only those of lines <= `until_line` when given,
        removing them from here; the row count goes with the first replay)."""
        rep.rows_read += self.rows_read
        self.rows_read = 0
        n = len(self.events)
        if until_line is not None:
            n = next((i for i, e in enumerate(self.events) if e[1] is not None and e[1] > until_line), n)
        for kind, line, reason, detail, count in self.events[:n]:
            (rep.fail if kind == "fail" else rep.repair)(line, reason, detail, count)
        del self.events[:n]


@dataclass
class IngestReport:
    """The whole stage's accounting: files, then filters in the order they ran."""

    files: dict[str, FileReport] = field(default_factory=dict)
    filters: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    allow_truncated: bool = False  # passed to every FileReport

    def file(self, path: str) -> FileReport:
        """The FileReport for `path`, created on first use."""
        if path not in self.files:
            self.files[path] = FileReport(path, allow_truncated=self.allow_truncated)
        return self.files[path]

    def truncated_files(self) -> list[str]:
        """Files read only up to a truncation (allowed by data.allow_truncated): shouted about."""
        return [f.path for f in self.files.values()
                if f.failed.get("truncated_gzip") or f.failed.get("corrupt_gzip")]

    def dropped(self, step: str, rows_before: int, rows_after: int, **extra: Any) -> None:
        """Record one filter step: rows in, rows out, and anything else worth knowing."""
        self.filters.append({"step": step, "rows_before": int(rows_before),
                             "rows_after": int(rows_after),
                             "rows_dropped": int(rows_before - rows_after), **extra})

    def to_dict(self) -> dict[str, Any]:
        return {"files": [f.to_dict() for f in self.files.values()], "filters": self.filters,
                "notes": self.notes}
