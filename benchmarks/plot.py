"""Draw docs/benchmarks-*.png from benchmarks/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
LABELS = {
    "a_json_loads_floor": "(a) json.loads only\n(the floor)",
    "b_naive_boto3": "(b) boto3 get_records\n+ TypeDeserializer",
    "c_ddbstreams_new_image": "(c) ddbstreams\nreads new_image",
    "d_ddbstreams_keys": "(d) ddbstreams\nreads keys",
    "e_ddbstreams_fast_new_image": "(e) ddbstreams[fast]\nreads new_image",
}


def record_path() -> None:
    results = json.loads((RESULTS / "record_path.json").read_text())
    views = results["views"]
    figure, axes = plt.subplots(1, len(views), figsize=(16, 4.6))
    for axis, (view, data) in zip(axes, views.items(), strict=True):
        rates = data["records_per_second"]
        bars = axis.bar(
            [LABELS[name] for name in rates],
            list(rates.values()),
            color=["#999999", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"][: len(rates)],
        )
        axis.bar_label(bars, labels=[f"{rate:,.0f}" for rate in rates.values()], fontsize=8)
        axis.set_title(view, fontsize=9)
        axis.tick_params(axis="x", labelsize=7)
        axis.set_ylabel("records per second")
    figure.suptitle("GetRecords body to handler, 1000-record pages (higher is better)")
    figure.tight_layout()
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
