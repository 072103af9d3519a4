"""surgebench's tab in Locust's web UI: TTFT, ITL, client lag, outcomes and the verdict, live.

Locust's own table counts each request once (one request event per request); what an LLM stream
adds (time to first token, inter-token latency, the load generator's own delay and whether the
run can be trusted) is shown here, through Locust's web UI extension points: an extra tab
(``extended_tabs``/``extended_tables`` template arguments) whose rows ride along in the
``/stats/requests`` JSON the UI polls (``extended_stats``), and ``/surgebench/live`` with the same
figures as JSON for scripts. The figures come from the process's merged HDR histograms (the
master's, in distributed runs), from the end of the warm-up on.

Imported by the locustfile only (it needs Locust's Flask app).
"""

from __future__ import annotations

import json
from typing import Any

from loadtests.health import series
from loadtests.recorder import Recorder
from loadtests.summary import GuardSettings, RunInfo, saturation

TAB_KEY = "surgebench"
COLUMNS = [
    {"key": "metric", "title": "Metric"},
    {"key": "count", "title": "# samples"},
    {"key": "p50", "title": "p50 (ms)"},
    {"key": "p90", "title": "p90 (ms)"},
    {"key": "p99", "title": "p99 (ms)"},
    {"key": "max", "title": "max (ms)"},
    {"key": "note", "title": "Note"},
]
METRICS = (
    ("ttft_ms", "TTFT", "request sent -> first token"),
    ("itl_ms", "ITL", "every gap between tokens"),
    ("tpot_ms", "TPOT", "per request: (end - first token) / (tokens - 1)"),
    ("e2e_ms", "end-to-end", "ok requests"),
    ("rejected_ms", "rejection time", "503/429 answers: not failures"),
    ("client_lag_ms", "client lag", "token's recorded arrival - server's send stamp"),
    ("read_lag_ms", "read lag", "read returned - kernel received the bytes (our own delay)"),
    ("loop_lag_ms", "event-loop lag", "oversleep of a 10 ms timer in the load process"),
)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


NO_STAMPS_NOTE = "no send stamps from the server (the mock and service send them with --stamp)"


def live_rows(
    recorder: Recorder,
    guard: GuardSettings,
    info: RunInfo,
    health: list[dict[str, float | None]] | None = None,
) -> list[dict[str, str]]:
    """The tab's rows: one per latency metric, the outcomes, then the verdict (judged as the
    summary will be: with the per-second `health` series, so its advice names the same cause)."""
    rows: list[dict[str, str]] = []
    for name, label, note in METRICS:
        s = recorder.stats(name)
        if name == "client_lag_ms" and not s.count and recorder.stats("ttft_ms").count:
            note = NO_STAMPS_NOTE
        rows.append(
            {
                "metric": label,
                "count": str(s.count),
                "p50": _ms(s.p50),
                "p90": _ms(s.p90),
                "p99": _ms(s.p99),
                "max": _ms(s.max),
                "note": note,
            }
        )
    outcomes = {k: v for k, v in recorder.outcomes.items() if v}
    rows.append(
        {
            "metric": "outcomes",
            "count": str(sum(outcomes.values())),
            "note": ", ".join(f"{k} {v}" for k, v in outcomes.items()) or "none yet",
        }
    )
    _figures, reasons = saturation(recorder, guard, info, health)
    if reasons:
        verdict = "INVALID: " + "; ".join(reasons)
    elif not outcomes:
        verdict = "nothing measured yet (warm-up, or no request has ended)"
    else:
        verdict = "valid so far"
    rows.append({"metric": "verdict", "note": verdict})
    return rows


def live_state(state: Any) -> tuple[GuardSettings, RunInfo]:
    """The guard and run facts of a running `hooks.SurgeState`, as the summary will use them."""
    settings = state.settings
    processes = max(1, settings.processes) if state.is_master else 1
    reported = len(state.distribution.workers_reported) if state.is_master else 1
    # before the first worker report (every 3 s) there is nothing to call incomplete
    info = RunInfo(
        name=settings.name,
        started_at=state.started_at,
        start_epoch_s=state.window.start_ns / 1e9,
        duration_s=0.0,
        processes=processes,
        workers_reported=reported if reported else processes,
        remote_workers=state.is_master and settings.master,
    )
    return GuardSettings.from_settings(settings), info


def register(environment: Any) -> None:
    """Add the surgebench tab to this process's web UI (master or local; none when headless)."""
    web_ui = getattr(environment, "web_ui", None)
    state = getattr(environment, "surgebench", None)
    if web_ui is None or state is None:
        return
    from flask import Response, request

    web_ui.template_args["extended_tabs"] = [{"title": "LLM streams", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": COLUMNS}]

    def rows() -> list[dict[str, str]]:
        guard, info = live_state(state)
        return live_rows(
            state.recorder, guard, info, series(state.health.points, info.start_epoch_s)
        )

    @web_ui.app.after_request  # type: ignore[untyped-decorator]
    def add_rows(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if isinstance(data, dict):
            data["extended_stats"] = [{"key": TAB_KEY, "data": rows()}]
            response.set_data(json.dumps(data))
        return response

    @web_ui.app.route("/surgebench/live")  # type: ignore[untyped-decorator]
    @web_ui.auth_required_if_enabled  # type: ignore[untyped-decorator]
    def live() -> Response:
        return Response(json.dumps({"rows": rows()}), mimetype="application/json")
