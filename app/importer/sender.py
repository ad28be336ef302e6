"""Send a file's records through the HTTP API in batches, with a progress bar.

Resumable by design: re-running the same file is safe (predictions are idempotent by
prediction_id and come back as duplicates; actuals are last-write-wins). A batch the
server rejects (422) stored nothing: its bad records are reported by file position and
field, and the rest of the batch is sent again without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from lossmon import AuthError, Client, ValidationFailed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.importer.records import Format, Kind, Located, Task, count_rows, read_records

BATCH = 5_000


@dataclass(frozen=True, slots=True)
class Rejection:
    where: str
    field: str
    message: str

    def __str__(self) -> str:
        named = f"field {self.field!r}: " if self.field else ""
        return f"{self.where}: {named}{self.message}"


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    expired: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def final_line(self) -> str:
        return (
            f"imported {self.imported}, duplicates {self.duplicates}, rejected {len(self.rejected)}"
        )


def model_task(client: Client, model_id: str) -> Task:
    """The model's task, if this key may read it (an ingest-only key may not)."""
    try:
        model = client.get_model(model_id)
    except AuthError:
        return Task(multiclass=None)
    return Task(multiclass=model.get("task") == "multiclass")


def _batches(located: Iterable[Located], size: int) -> Iterator[list[Located]]:
    it = iter(located)
    while batch := list(islice(it, size)):
        yield batch


def _field_of(error: dict[str, Any]) -> str:
    name = str(error.get("field") or "")
    # Server fields of a batch item look like "predictions.3.score" or just "score".
    return name.rsplit(".", 1)[-1] if name else ""


def _send(
    client: Client, kind: Kind, model_id: str, records: list[dict[str, Any]]
) -> dict[str, int]:
    if kind == "predictions":
        p = client.log_predictions(model_id, records)
        return {"imported": p.accepted, "duplicates": p.duplicates, "expired": 0}
    a = client.log_actuals(model_id, records)
    return {"imported": a.accepted, "duplicates": 0, "expired": a.expired}


def send_batch(
    client: Client, kind: Kind, model_id: str, batch: list[Located], report: ImportReport
) -> None:
    """Send the batch's good records; a 422 names bad ones, which are dropped and the
    rest re-sent (the failed request stored nothing)."""
    pending = []
    for item in batch:
        if item.record is None:
            report.rejected.append(Rejection(item.where, item.field, item.message))
        else:
            pending.append(item)
    while pending:
        try:
            counts = _send(client, kind, model_id, [p.record for p in pending if p.record])
        except ValidationFailed as exc:
            bad: dict[int, list[dict[str, Any]]] = {}
            for error in exc.errors:
                index = error.get("index")
                if not isinstance(index, int) or not 0 <= index < len(pending):
                    raise  # not about one record: nothing to drop, stop here
                bad.setdefault(index, []).append(error)
            # Records before `stored_before` went in with earlier requests of this call.
            report.imported += exc.stored_before
            for index, errors in sorted(bad.items()):
                for error in errors:
                    report.rejected.append(
                        Rejection(pending[index].where, _field_of(error), str(error.get("message")))
                    )
            pending = [p for i, p in enumerate(pending) if i >= exc.stored_before and i not in bad]
            continue
        report.imported += counts["imported"]
        report.duplicates += counts["duplicates"]
        report.expired += counts["expired"]
        return


def import_file(
    *,
    client: Client,
    kind: Kind,
    model_id: str,
    path: Path,
    fmt: Format,
    console: Console | None = None,
    on_rejected: Callable[[Rejection], None] | None = None,
    batch_size: int = BATCH,
) -> ImportReport:
    report = ImportReport()
    task = model_task(client, model_id)
    total = count_rows(path, fmt)
    progress = Progress(
        TextColumn(f"{kind} {path.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    with progress:
        bar = progress.add_task(kind, total=total)
        for batch in _batches(read_records(path, fmt, kind, task), batch_size):
            before = len(report.rejected)
            send_batch(client, kind, model_id, batch, report)
            if on_rejected is not None:
                for rejection in report.rejected[before:]:
                    on_rejected(rejection)
            progress.advance(bar, len(batch))
    return report
