"""Pool the coverage of several `tools/coverage_diagnostic.py` runs on independent mock sets
(docs/VALIDATION.md (b)): per quantity, the galaxy-weighted 68 % / 95 % coverage over the runs,
with its binomial 1σ, as a Markdown table.

    python tools/coverage_pool.py cd_2026/coverage_diagnostic_sps.json \
        cd_2027/coverage_diagnostic_sps.json cd_2028/coverage_diagnostic_sps.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def pool(summaries: list[dict]) -> dict:
    """{quantity: (n, c68, c95)} pooled over ``summaries`` (weights: galaxies per run)."""
    n = np.array([s["galaxies"] for s in summaries], float)
    out = {}
    for q in summaries[0]["coverage_68_95"]:
        c = np.array([s["coverage_68_95"][q]["all"] for s in summaries], float)  # (runs, 2)
        out[q] = (int(n.sum()), *(n @ c / n.sum()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summaries", nargs="+", help="coverage_diagnostic_<variant>.json files")
    a = ap.parse_args(argv)
    runs = [json.loads(open(p).read()) for p in a.summaries]
    if len({r["variant"] for r in runs}) != 1:
        ap.error(f"runs of different variants: {sorted({r['variant'] for r in runs})}")
    pooled = pool(runs)
    n = next(iter(pooled.values()))[0]
    s68, s95 = np.sqrt(0.68 * 0.32 / n), np.sqrt(0.95 * 0.05 / n)
    print(f"{runs[0]['variant']}: {len(runs)} runs, {n} galaxies "
          f"(binomial 1σ {s68:.3f} at 68 %, {s95:.3f} at 95 %)")
    print("| quantity | " + " | ".join(f"run {i + 1} ({r['galaxies']})"
                                        for i, r in enumerate(runs)) + " | pooled |")
    print("|---" * (len(runs) + 2) + "|")
    for q, (_, c68, c95) in pooled.items():
        cells = [f"{r['coverage_68_95'][q]['all'][0]:.3f} / {r['coverage_68_95'][q]['all'][1]:.3f}"
                 for r in runs]
        print(f"| {q} | " + " | ".join(cells) + f" | **{c68:.3f} / {c95:.3f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
