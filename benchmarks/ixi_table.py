"""Render ``benchmarks/results/ixi.jsonl`` (from ixi_brain_age.py) as Markdown tables.

Run: ``python benchmarks/ixi_table.py benchmarks/results/ixi.jsonl``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    age = [r for r in rows if r.get("task") == "age"]
    print(
        "| model | encoder | weights | pooling | position embedding | MAE (years) | fold MAEs | r |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(age, key=lambda r: r["mae"]):
        folds = ", ".join(f"{m:.1f}" for m in r.get("fold_mae", []))
        print(
            f"| {r['model']} | {r.get('encoder', '')} | {r.get('weights', '') or ''} "
            f"| {r.get('pooling', '')} | {r.get('position_embedding', '') or 'none'} "
            f"| {r['mae']:.2f} | {folds} | {r.get('r', '')} |"
        )
    sex = [r for r in rows if r.get("task") == "sex"]
    if sex:
        print("\n| sex classifier | pooling | position embedding | ROC-AUC |")
        print("| --- | --- | --- | --- |")
        for r in sex:
            print(
                f"| {r['model']} | {r.get('pooling', '')} | {r.get('position_embedding', '')} "
                f"| {r['roc_auc']:.3f} |"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/ixi.jsonl")
