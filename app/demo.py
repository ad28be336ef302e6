"""`lossmon demo`: a self-contained tour that ends in a real, signed webhook.

It starts a `lossmon serve` on a temporary SQLite file (or uses --url), registers a
simulated click-through-rate model with hourly windows, sets a `relative_to_reference`
monitor whose webhook points at a receiver running inside this process, then streams
a few simulated days of predictions through :mod:`lossmon`. Ground truth arrives one
to four simulated hours after each prediction, shuffled across windows. Midway the
model's scores get much noisier; the scheduler computes the windows, the monitor fires,
and the receiver verifies the delivery's Standard Webhooks signature.

Exit code 0 only if the alert's webhook was received and verified.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from lossmon import Client, LossmonError, ValidationFailed
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app import devserver
from app.notify.signing import generate_secret

HOUR = timedelta(hours=1)

# The simulated world. True click log-odds ~ N(-3.5, 2.5) (a base rate near 13%); the
# model sees them through Gaussian noise on the logit scale: small before the drift,
# large after it (a broken feature, say). Chosen so that with >= 120 labels per window
# the relative_to_reference rule (+10%, alpha 1%) holds on ~99% of drifted windows and
# on ~none of the healthy ones.
LOGIT_MEAN, LOGIT_SD = -3.5, 2.5
NOISE_BEFORE, NOISE_AFTER = 0.3, 4.0
LABEL_DELAY_H = (1.0, 4.0)
COUNTRIES = ("DE", "FR", "US", "BR")


@dataclass
class DemoOptions:
    url: str | None = None
    api_key: str | None = None
    days: int = 3
    rows_per_hour: int = 300
    seed: int = 7
    keep_running: bool = False
    pace_s: float = 0.15  # wall-clock seconds per simulated hour, at least
    wait_s: float = 45.0  # for the alert's webhook once the stream is over


# --------------------------------------------------------------------------- receiver


@dataclass
class Delivery:
    webhook_id: str
    event: str
    payload: dict[str, Any]


@dataclass
class WebhookReceiver:
    """A threaded HTTP server on loopback that verifies and records each delivery."""

    secret: str
    console: Console
    deliveries: list[Delivery] = field(default_factory=list)
    rejected: int = 0
    firing: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/lossmon"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(self))
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() waits for serve_forever's loop without a timeout; bounded here (that
        # loop runs in a daemon thread, which cannot keep the process alive anyway).
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout=5)
        server.server_close()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected += 1
            self.console.print(
                f"[bold red]webhook received but NOT verified[/] ({exc}): rejected with 400"
            )
            return 400
        webhook_id = headers.get("webhook-id", "")
        with self._lock:
            if any(d.webhook_id == webhook_id for d in self.deliveries):
                return 204  # at-least-once delivery: a retry of one we already have
            self.deliveries.append(Delivery(webhook_id, str(payload.get("type")), payload))
        window = payload.get("window") or {}
        self.console.print(
            f"[bold green]webhook received and verified[/]: {payload.get('type')} "
            f"for model {payload.get('model_id')}, window {_short(window.get('start'))} "
            f"(log loss {_num(window.get('log_loss'))}, skill {_num(window.get('skill'))}), "
            f"webhook-id {webhook_id}"
        )
        if payload.get("type") == "alert.firing":
            self.firing.set()
        return 204


def _receiver_handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            status = receiver.handle(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


# --------------------------------------------------------------------------- server


@dataclass
class LocalServer:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_local_server(timeout_s: float = 90.0) -> LocalServer:
    """`lossmon serve` on a temporary SQLite file and a free loopback port."""
    directory = Path(tempfile.mkdtemp(prefix="lossmon-demo-"))
    env = {
        "LOSSMON_SECRET_KEY_FILE": str(directory / "lossmon.secret"),
        "LOSSMON_COMPUTE_INTERVAL_S": "1",
        "LOSSMON_DELIVER_INTERVAL_S": "0.5",
        "LOSSMON_WEBHOOK_ALLOW_PRIVATE": "true",
        "LOSSMON_WEBHOOK_BACKOFF_BASE_S": "0.5",
        "LOSSMON_WEBHOOK_BACKOFF_MAX_S": "2",
        "LOSSMON_LOG_FORMAT": "text",
        "LOSSMON_LOG_LEVEL": "WARNING",
    }
    try:
        started = devserver.start_serve(
            f"sqlite:///{directory / 'demo.db'}",
            workdir=directory,
            extra_env=env,
            args=(),  # the scheduler runs in the server
            log_path=directory / "server.log",
            timeout_s=timeout_s,
            poll_s=0.1,
        )
    except RuntimeError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"lossmon serve did not start:\n{exc}") from exc
    return LocalServer(started.url, started.process, directory, started.log_path)


def stop_local_server(server: LocalServer) -> None:
    devserver.terminate(server.process)
    shutil.rmtree(server.directory, ignore_errors=True)


# --------------------------------------------------------------------------- simulation


@dataclass
class Hour:
    predictions: list[dict[str, Any]]
    # (arrival hour index, actual) for each prediction of this hour
    actuals: list[tuple[int, dict[str, Any]]]


def simulate_hour(
    rng: np.random.Generator,
    *,
    index: int,
    start: datetime,
    rows: int,
    drifted: bool,
    run_id: str,
) -> Hour:
    t0 = start + index * HOUR
    offsets = np.sort(rng.uniform(0.0, 3600.0, rows))
    logits = rng.normal(LOGIT_MEAN, LOGIT_SD, rows)
    labels = rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))
    noise = NOISE_AFTER if drifted else NOISE_BEFORE
    scores = 1.0 / (1.0 + np.exp(-(logits + rng.normal(0.0, noise, rows))))
    delays = rng.uniform(LABEL_DELAY_H[0] * 3600, LABEL_DELAY_H[1] * 3600, rows)
    countries = rng.choice(len(COUNTRIES), rows)
    predictions, actuals = [], []
    for i in range(rows):
        pid = f"{run_id}-{index:04d}-{i:05d}"
        ts = t0 + timedelta(seconds=float(offsets[i]))
        predictions.append(
            {
                "prediction_id": pid,
                "timestamp": ts,
                "score": float(scores[i]),
                "model_version": "v2" if drifted else "v1",
                "segments": {"country": COUNTRIES[int(countries[i])]},
            }
        )
        arrival_s = float(offsets[i] + delays[i])
        arrival_hour = index + int(arrival_s // 3600)
        actuals.append(
            (
                arrival_hour,
                {
                    "prediction_id": pid,
                    "label": int(labels[i]),
                    "timestamp": t0 + timedelta(seconds=arrival_s),
                },
            )
        )
    return Hour(predictions, actuals)


# --------------------------------------------------------------------------- run


def _short(ts: Any) -> str:
    if not isinstance(ts, str):
        return "-"
    return ts.replace("T", " ")[5:16]


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pooled(windows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """(log loss, baseline) over the windows' labeled rows taken together."""
    rows = [w for w in windows if w.get("log_loss") is not None and w.get("labeled")]
    n = sum(w["labeled"] for w in rows)
    if not n:
        return None
    loss = sum(w["log_loss"] * w["labeled"] for w in rows) / n
    q = sum((w.get("positive_rate") or 0.0) * w["labeled"] for w in rows) / n
    baseline = -(q * math.log(q) + (1 - q) * math.log(1 - q)) if 0 < q < 1 else 0.0
    return loss, baseline


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C, cleaning up on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    # Once is enough: a repeated signal must not interrupt the cleanup it started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def _terminate_cleanly() -> Any:
    """Turn SIGTERM/SIGHUP into an exception (and SIGINT into KeyboardInterrupt) for the
    duration of the demo. By default SIGTERM/SIGHUP kill Python on the spot, skipping
    `finally`: the server child and the temporary directory would outlive us (`kill PID`,
    a closed terminal, systemd)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {
        sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    # Ctrl-C is how the demo says to stop it, so it must raise KeyboardInterrupt even when
    # this process inherited SIGINT ignored or blocked (both survive fork and exec: a
    # `cmd &` in a script, or a parent's thread with it masked). Seen in CI: a demo
    # started from the test suite slept on through SIGINT (stack dump via SIGUSR1).
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a stuck demo is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        yield
    finally:
        faulthandler.unregister(signal.SIGUSR1)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(options: DemoOptions, console: Console | None = None) -> int:
    with _terminate_cleanly():
        try:
            return _run(options, console)
        except Terminated as exc:  # arrived during the cleanup of _run itself
            return 128 + exc.signum


def _run(options: DemoOptions, console: Console | None) -> int:
    if console is None:
        # Not a terminal (a pipe, CI): wide enough that the table and messages don't wrap.
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    server: LocalServer | None = None
    receiver: WebhookReceiver | None = None
    try:
        if options.url is None:
            with console.status("starting lossmon serve on a temporary SQLite database ..."):
                server = start_local_server()
            url = server.url
            console.print(f"started lossmon at {url} (SQLite in {server.directory})")
        else:
            url = options.url.rstrip("/")
        receiver = WebhookReceiver(secret=generate_secret(), console=console)
        receiver.start()
        console.print(f"webhook receiver listening at {receiver.url}")
        with Client(url, options.api_key, timeout=30.0) as lm:
            code = _demo(lm, url, options, receiver, console, own_server=server is not None)
        if code == 0 and options.keep_running and server is not None:
            console.print(
                f"\nlossmon keeps running at [bold]{url}/[/] (Ctrl-C to stop and clean up)"
            )
            try:
                while server.process.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                console.print("interrupted: stopping lossmon and removing its temporary directory")
        return code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Terminated as exc:
        console.print(f"[yellow]{exc}: stopping[/]")
        return 128 + exc.signum
    except RuntimeError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    except LossmonError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        if server is not None and server.log_tail():
            console.print(f"server log (last lines):\n{server.log_tail()}")
        return 1
    finally:
        # Cleanup is bounded (the server gets SIGTERM, then SIGKILL after 15 s); should it
        # ever hang anyway, every thread's stack goes to stderr so the hang says where.
        faulthandler.dump_traceback_later(60)
        try:
            if receiver is not None:
                receiver.stop()
            if server is not None:
                stop_local_server(server)
        finally:
            faulthandler.cancel_dump_traceback_later()


def _demo(
    lm: Client,
    url: str,
    options: DemoOptions,
    receiver: WebhookReceiver,
    console: Console,
    *,
    own_server: bool,
) -> int:
    rng = np.random.default_rng(options.seed)
    shuffler = random.Random(options.seed)
    run_id = secrets.token_hex(3)
    model_id = "ctr-demo" if own_server else f"ctr-demo-{run_id}"
    hours = options.days * 24
    drift_at = hours // 2
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - hours * HOUR
    reference_end = start + timedelta(days=1)
    min_labeled = max(20, min(200, options.rows_per_hour * 4 // 5))

    lm.put_model(
        model_id,
        task="binary",
        window="1h",
        description="lossmon demo: a simulated click-through-rate model whose scores "
        "get noisy midway",
    )
    rule = {
        "type": "relative_to_reference",
        "reference_start": start,
        "reference_end": reference_end,
        "max_increase": 0.1,
        "alpha": 0.01,
    }
    try:
        monitor = lm.create_monitor(
            model_id,
            name="ctr-degrading",
            rule=rule,
            min_labeled=min_labeled,
            for_windows=2,
            webhook_url=receiver.url,
            webhook_secret=receiver.secret,
        )
    except ValidationFailed as exc:
        if any(e.get("field") == "webhook_url" for e in exc.errors):
            console.print(
                "[bold red]the server refuses the demo's loopback webhook URL.[/] Run the "
                "server on this machine with LOSSMON_WEBHOOK_ALLOW_PRIVATE=true, or run "
                "`lossmon demo` without --url to let it start its own."
            )
            return 1
        raise
    console.print(
        f"model [bold]{model_id}[/] (1h windows); monitor [bold]{monitor['name']}[/]: "
        f"log loss > 1.1 x the first simulated day's, significant at 1%, for 2 windows "
        f"of >= {min_labeled} labels"
    )
    console.print(
        f"streaming {options.days} simulated days ({start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC, {options.rows_per_hour} predictions/hour); "
        f"the model's scores get noisy at {start + drift_at * HOUR:%Y-%m-%d %H:%M}"
    )

    due: dict[int, list[dict[str, Any]]] = {}
    sent_predictions = sent_actuals = duplicates = 0
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("simulated hours"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("streaming", total=hours)
        for h in range(hours):
            began = time.monotonic()
            drifted = h >= drift_at
            hour = simulate_hour(
                rng,
                index=h,
                start=start,
                rows=options.rows_per_hour,
                drifted=drifted,
                run_id=run_id,
            )
            result = lm.log_predictions(model_id, hour.predictions)
            sent_predictions += result.accepted
            duplicates += result.duplicates
            for arrival, actual in hour.actuals:
                due.setdefault(arrival, []).append(actual)
            # Labels of earlier hours that "arrive" now, in no particular order.
            arriving = due.pop(h, [])
            shuffler.shuffle(arriving)
            if arriving:
                sent_actuals += lm.log_actuals(model_id, arriving).accepted
            phase = "[red]drifted[/]" if drifted else "healthy"
            progress.update(
                task,
                advance=1,
                description=f"{start + h * HOUR:%a %H:%M} UTC {phase}",
            )
            time.sleep(max(0.0, options.pace_s - (time.monotonic() - began)))
        progress.update(task, description="streamed")
    still_out = sum(len(v) for v in due.values())
    console.print(
        f"sent {sent_predictions} predictions and {sent_actuals} delayed, shuffled labels "
        f"({still_out} labels of the last hours have not arrived yet)"
    )

    with console.status("waiting for the scheduler to compute windows and evaluate ..."):
        deadline = time.monotonic() + options.wait_s
        while not receiver.firing.is_set() and time.monotonic() < deadline:
            time.sleep(0.25)
        # Then let it catch up with the last windows, for the summary.
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            windows = lm.metrics(model_id, start=start, end=end)
            if len(windows) >= hours and sum(w["labeled"] for w in windows) >= sent_actuals:
                break
            time.sleep(0.5)
    alerts = lm.alerts(model_id=model_id)
    alert = alerts[-1] if alerts else None  # newest first: the first episode is last
    if alert is not None:
        w = alert["window"]
        console.print(
            f"[bold red]alert fired[/]: monitor {alert['monitor']['name']!r} "
            f"(relative_to_reference) on window {_short(w.get('start'))} UTC: log loss "
            f"{_num(w.get('log_loss'))} vs baseline {_num(w.get('baseline_log_loss'))}, "
            f"skill {_num(w.get('skill'))}, {w.get('labeled')} labels; alert {alert['alert_id']}"
        )
        for d in lm.alert(alert["alert_id"])["deliveries"]:
            console.print(
                f"  delivery {d['delivery_id']}: {d['event_type']} {d['status']} "
                f"after {d['attempts']} attempt(s)"
            )

    _summary(lm, model_id, start, end, drift_at, alert, console)
    console.print(f"\ndashboard: [bold]{url}/[/]")

    if receiver.firing.is_set():
        console.print(
            "[bold green]OK[/]: the drift was detected and the alert's signed webhook was "
            "received and verified."
        )
        return 0
    if alert is None:
        console.print(
            f"[bold red]FAILED[/]: no alert fired within {options.wait_s:.0f}s of the end of "
            "the stream (try more --rows-per-hour for tighter windows)."
        )
    else:
        console.print(
            f"[bold red]FAILED[/]: the alert fired but its webhook did not arrive within "
            f"{options.wait_s:.0f}s (can the server reach {receiver.url}?)."
        )
    return 1


def _summary(
    lm: Client,
    model_id: str,
    start: datetime,
    end: datetime,
    drift_at: int,
    alert: dict[str, Any] | None,
    console: Console,
) -> None:
    windows = lm.metrics(model_id, start=start, end=end)
    if not windows:
        return
    drift_start = start + drift_at * HOUR
    reference_end = start + timedelta(days=1)

    def when(w: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(w["start"].replace("Z", "+00:00"))

    alert_start = alert["window"].get("start") if alert else None
    step = max(1, math.ceil(len(windows) / 16))
    keep = set(range(0, len(windows), step)) | {len(windows) - 1}
    for i, w in enumerate(windows):
        if w["start"] == alert_start or when(w) == drift_start:
            keep.add(i)
    table = Table(
        title=f"{model_id}: hourly windows (every {step}h + key ones; ref. = reference day)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name, justify in [
        ("UTC", "left"),
        ("phase", "left"),
        ("preds", "right"),
        ("labels", "right"),
        ("log loss", "right"),
        ("baseline", "right"),
        ("skill", "right"),
        ("", "left"),
    ]:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for i in sorted(keep):
        w = windows[i]
        t = when(w)
        phase = "ref." if t < reference_end else ("drifted" if t >= drift_start else "healthy")
        note = "<- alert" if w["start"] == alert_start else ""
        if not note and not w.get("labeled"):
            note = "pending"
        skill = w.get("skill")
        table.add_row(
            _short(w["start"]),
            phase,
            str(w["predictions"]),
            str(w["labeled"]),
            _num(w.get("log_loss")),
            _num(w.get("baseline_log_loss")),
            f"[red]{_num(skill)}[/]" if skill is not None and skill < 0 else _num(skill),
            note,
        )
    console.print(table)
    before = _pooled([w for w in windows if when(w) < drift_start])
    after = _pooled([w for w in windows if when(w) >= drift_start])
    if before and after:
        console.print(
            f"before the drift: log loss {before[0]:.3f} vs baseline {before[1]:.3f} "
            f"(skill {1 - before[0] / before[1]:.2f}); after: {after[0]:.3f} vs "
            f"{after[1]:.3f} (skill {1 - after[0] / after[1]:.2f})"
        )
