"""Render IXI result files (JSON lines) as Markdown tables.

Run: ``python benchmarks/accuracy/ixi_table.py benchmarks/results/ixi.jsonl``; the
summary rows of ``ixi_finetune.py`` (``benchmarks/results/ixi_finetune.jsonl``)
render the same way (its per-fold lines are skipped).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _features(row: dict) -> str:
    layer, grid = row.get("feature_layer"), row.get("feature_grid", 1)
    if not layer and grid == 1:
        return "last layer"
    return f"{layer or 'last layer'}, {grid}x{grid}"


def _head(row: dict) -> str:
    parts = [f"d={row['embed_dim']}"] if "embed_dim" in row else []
    parts += [f"dropout {row['dropout']}"] if row.get("dropout") else []
    return ", ".join(parts)


def main(paths: list[str]) -> None:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    age = [r for r in rows if r.get("task") == "age" and "mae" in r]
    print(
        "| model | encoder | weights | features | pooling | position embedding | head "
        "| MAE (years) | fold MAEs | r |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(age, key=lambda r: r["mae"]):
        folds = ", ".join(f"{m:.1f}" for m in r.get("fold_mae", []))
        slice_model = r["model"] == "slice"
        print(
            f"| {r['model']} | {r.get('encoder', '')} | {r.get('weights', '') or ''} "
            f"| {_features(r) if slice_model else ''} | {r.get('pooling', '')} "
            f"| {(r.get('position_embedding') or 'none') if slice_model else ''} "
            f"| {_head(r)} | {r['mae']:.2f} | {folds} | {r.get('r', '')} |"
        )
    sex = [r for r in rows if r.get("task") == "sex"]
    if sex:
        print("\n| sex classifier | features | pooling | position embedding | ROC-AUC |")
        print("| --- | --- | --- | --- | --- |")
        for r in sex:
            slice_model = r["model"] == "slice"
            print(
                f"| {r['model']} | {_features(r) if slice_model else ''} "
                f"| {r.get('pooling', '')} | {r.get('position_embedding', '') or ''} "
                f"| {r['roc_auc']:.3f} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["benchmarks/results/ixi.jsonl"])
