#!/usr/bin/env bash
# Issue-2 acceptance run: a short FMNIST run on the CPU, {8, 32} bits x {with, without} moving average.
# Usage: experiments/fmnist_mlp_cpu.sh [DATA_DIR]   (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
out=results/fmnist-mlp-cpu
common=(--dataset fmnist --data-dir "$data" --model mlp --clients 20 --rounds 20 --seed 0)
for bits in 8 32; do
  for ma in 0.9 0; do
    .venv/bin/lpfl run "${common[@]}" --bits $bits --moving-average $ma --quiet --out "$out/bits$bits-ma$ma"
  done
done
.venv/bin/python - "$out" <<'PY'
import json, pathlib, platform, sys, datetime
out = pathlib.Path(sys.argv[1])
rows = ["| run | bits | moving average λ | final acc (mean ± std, last 5 rounds) |", "|---|---|---|---|"]
for run in sorted(out.glob("*/results.json")):
    r = json.loads(run.read_text())
    s = r["summary"]
    c = r["config"]
    acc = f"{100 * s['final_accuracy_mean']:.2f} ± {100 * s['final_accuracy_std']:.2f} %"
    rows.append(f"| {run.parent.name} | {c['bits']} | {c['moving_average']} | {acc} |")
head = f"FMNIST, MLP, 20 clients (40 % per round), alpha 0.04 balanced Dirichlet, 20 rounds, seed 0.\n" \
       f"Device: CPU ({platform.processor() or platform.machine()}), {datetime.date.today()}.\n" \
       f"Command: experiments/fmnist_mlp_cpu.sh\n\n"
(out / "SUMMARY.md").write_text(head + "\n".join(rows) + "\n")
print(head + "\n".join(rows))
PY
