"""Draw docs/benchmarks-*.png from benchmarks/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
LABELS = {  # variant: (label, colour)
    "a_json_loads_floor": ("(a) json.loads alone", "#999999"),
    "a2_floor_with_new_image": ("(a2) json.loads + new image", "#cccccc"),
    "a3_record_by_record_floor": ("(a3) decoded record by record alone", "#666666"),
    "b_naive_boto3": ("(b) get_records + TypeDeserializer", "#d62728"),
    "c_ddbstreams_new_image": ("(c) ddbstreams, new_image", "#1f77b4"),
    "d_ddbstreams_keys": ("(d) ddbstreams, keys", "#2ca02c"),
    "f_ddbstreams_new_image_gc_freeze": ("(f) as c, gc.freeze()", "#17becf"),
    "g_ddbstreams_new_image_prometheus": ("(g) as c, Prometheus metrics", "#9467bd"),
}


def record_path() -> None:
    results = json.loads((RESULTS / "record_path.json").read_text())
    views = results["views"]
    figure, axes = plt.subplots(1, len(views), figsize=(16, 5.4))
    shown: list[str] = []
    for axis, (view, data) in zip(axes, views.items(), strict=True):
        names = [name for name in LABELS if name in data["records_per_second"]]
        rates = [data["records_per_second"][name] for name in names]
        bars = axis.bar(
            [name.split("_")[0] for name in names],  # a, a2, b, ...
            rates,
            color=[LABELS[name][1] for name in names],
        )
        axis.bar_label(bars, labels=[f"{rate:,.0f}" for rate in rates], fontsize=7)
        axis.set_title(view, fontsize=9)
        axis.set_ylabel("records per second")
        shown += [name for name in names if name not in shown]
    figure.legend(
        handles=[Patch(color=LABELS[name][1], label=LABELS[name][0]) for name in shown],
        loc="lower center",
        ncol=len(shown),
        fontsize=8,
    )
    figure.suptitle("GetRecords body to handler, 1000-record pages (higher is better)")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(DOCS / "benchmarks-record-path.png", dpi=100)


def memory() -> None:
    results = json.loads((RESULTS / "memory.json").read_text())
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for name in ("ddbstreams", "unbounded_queue"):
        samples = results[name]["rss_growth_mb_samples"]
        axis.plot([t for t, _ in samples], [mb for _, mb in samples], label=name, marker=".")
    axis.set_xlabel("seconds")
    axis.set_ylabel("RSS growth (MB)")
    axis.set_title("Slow handler on a fast stream: memory")
    axis.legend()
    figure.tight_layout()
    figure.savefig(DOCS / "benchmarks-memory.png", dpi=100)


if __name__ == "__main__":
    record_path()
    memory()
