"""Markdown tables and plots from the JSON of ``edgesiam bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def _lat(entry: dict[str, Any] | None) -> str:
    if not entry or "p50_ms" not in entry:
        return str((entry or {}).get("status", "n/a"))
    return f"{entry['p50_ms']:.3f} / {entry['p95_ms']:.3f}"


def bundle_table(report: dict[str, Any]) -> str:
    """One row per bundle: sizes, per-window latency of each runtime, pipeline cost."""
    head = (
        "| bundle | modality | int8 KB | float32 KB | torch eager p50/p95 ms "
        "| TFLite float32 p50/p95 ms | TFLite int8 p50/p95 ms | pipeline ms per s of signal "
        "| RTF | dominant stage |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for name, e in report["bundles"].items():
        sizes = e["sizes"]["models_bytes"]
        lat = e["latency"]
        p = e["pipeline"]
        share = p["stage_share"][p["dominant_stage"]]
        rows.append(
            f"| {name} | {e['modality']} | {_f(sizes.get('int8', 0) / 1000, 1)} "
            f"| {_f(sizes.get('float32', 0) / 1000, 1)} | {_lat(lat.get('torch_eager'))} "
            f"| {_lat(lat.get('tflite_float32'))} | {_lat(lat.get('tflite_int8'))} "
            f"| {_f(p['ms_per_second'])} | {_f(p['real_time_factor'], 5)} "
            f"| {p['dominant_stage']} ({share:.0%}) |"
        )
    return head + "\n".join(rows) + "\n"


def matching_table(report: dict[str, Any]) -> str:
    m = report["matching"]
    centred = m.get("centred", {})
    head = (
        "| gallery templates | p50 ms | p95 ms | centred on the background: p50 ms | p95 ms |\n"
        "|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for n, v in m["sizes"].items():
        c = centred.get(n, {})
        rows.append(
            f"| {n} | {_f(v['p50_ms'], 4)} | {_f(v['p95_ms'], 4)} | "
            f"{_f(c.get('p50_ms'), 4)} | {_f(c.get('p95_ms'), 4)} |"
        )
    return head + "\n".join(rows) + "\n"


def goals_table(report: dict[str, Any]) -> str:
    head = "| goal | measured | target | met |\n|---|---:|---:|---|\n"
    rows = [
        f"| {k} | {_f(v['value'])} | {'≥' if v.get('op') == '>=' else '≤'} {_f(v['goal'], 1)} "
        f"| {_f(v['met'])} |"
        for k, v in report.get("goals", {}).items()
    ]
    return head + "\n".join(rows) + "\n"


def device_lines(report: dict[str, Any]) -> str:
    rss = report.get("device_rss", {})
    mq = report.get("mqtt", {})
    lines = []
    if "peak_rss_mb" in rss:
        lines.append(
            f"- device-only `edgesiam run` ({rss.get('venv')}, {rss.get('bundle')}): peak RSS "
            f"{rss['peak_rss_mb']} MB, RTF {_f(rss.get('real_time_factor'), 5)}"
        )
    else:
        lines.append(f"- device-only RSS: {rss.get('status', 'n/a')}")
    if mq.get("e2e_latency_ms_p50") is not None:
        lines.append(
            f"- window end → subscriber through Mosquitto ({mq.get('events')} events): "
            f"p50 {mq['e2e_latency_ms_p50']} ms, p95 {mq['e2e_latency_ms_p95']} ms "
            f"(decision p95 {mq.get('decision_latency_ms_p95')} ms, delivery p95 "
            f"{mq.get('delivery_latency_ms_p95')} ms)"
        )
    else:
        lines.append(f"- end-to-end MQTT latency: {mq.get('status', 'no events')}")
    peers = report.get("peers", {})
    if "status" in peers:
        lines.append(f"- peers: {peers['status']}")
    else:
        for name, p in peers.items():
            p = p if isinstance(p, dict) else {"status": p}
            cost = p.get("ms_per_audio_second")
            ratio = p.get("ratio_to_ours")
            text = f"{_f(cost)} ms per s of audio" if cost is not None else p.get("status", "?")
            if ratio is not None:
                text += f" ({ratio:.1f}× edgesiam's cost)"
            if p.get("reason") and cost is None:
                text += f": {p['reason']}"
            lines.append(f"- peer {name}: {text}")
    return "\n".join(lines) + "\n"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def accuracy_table(report: dict[str, Any]) -> str:
    """One row per test set and system: EER, minDCF, few-shot accuracy, hard-trial EER."""
    acc = report.get("accuracy", {})
    if "status" in acc:
        return f"Accuracy: {acc['status']}.\n"
    head = (
        "| test set (held out) | system | EER % | minDCF | 5-way 1-shot % | 5-way 5-shot % "
        "| hard-trial EER % |\n|---|---|---:|---:|---:|---:|---:|\n"
    )
    rows, notes = [], []
    for key, entry in acc.items():
        if entry.get("status") != "ok":
            notes.append(f"- {key}: {entry.get('status')}: {entry.get('reason')}")
            continue
        where = f"{entry['bundle']}: {entry['data']} ({entry['held_out']}; {entry['recordings']} recordings)"
        for system, m in entry["systems"].items():
            rows.append(
                f"| {where} | {system} | {_pct(m.get('eer'))} | {_f(m.get('min_dcf'))} "
                f"| {_pct(m.get('way5_shot1'))} | {_pct(m.get('way5_shot5'))} "
                f"| {_pct(m.get('hard_eer'))} |"
            )
            where = ""
        for peer, st in entry.get("peers", {}).items():
            if st.get("status") != "ok":
                notes.append(f"- {key}: {peer} {st.get('status')}: {st.get('reason')}")
    return head + "\n".join(rows) + "\n" + ("\n".join(notes) + "\n" if notes else "")


def markdown(report: dict[str, Any]) -> str:
    """The README section: every table, from the JSON."""
    mach = report.get("machine", {})
    return (
        f"Measured on {mach.get('cpu', '?')}, one thread"
        f"{' (quick run)' if report.get('quick') else ''}.\n\n"
        + bundle_table(report)
        + "\nMatching one query (`Gallery.best`):\n\n"
        + matching_table(report)
        + "\n"
        + device_lines(report)
        + "\nAccuracy on the same held-out trials (EER and minDCF: lower is better):\n\n"
        + accuracy_table(report)
        + "\nGoals:\n\n"
        + goals_table(report)
    )


def plot(report: dict[str, Any], folder: str | Path) -> list[Path]:
    """``matching_latency.png`` (latency vs gallery size); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sizes = report["matching"]["sizes"]
    n = [int(k) for k in sizes]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for q in ("p50_ms", "p95_ms"):
        ax.plot(n, [sizes[k][q] for k in sizes], marker="o", label=q.replace("_ms", ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gallery templates")
    ax.set_ylabel("matching latency per window (ms)")
    ax.set_title(f"Gallery.best, dim {report['matching']['dim']}, one thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "matching_latency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
