#!/usr/bin/env bash
# One GPU slot's work, time-boxed. Run from the repository root on the GPU machine:
#
#   experiments/gpu_session.sh DATA_DIR OUT_DIR BUDGET_SECONDS
#
# 1. engine speed in the paper's setting, FMNIST and CIFAR-10 (issue 3): OUT/engine-speed-*.json
# 2. the 200-round CIFAR-10 run at 8 bits + moving average, timed end to end (issue 3's
#    target); it is also a cell of Table 1
# 3. Table 1 priority runs, FMNIST first, on SHARDS parallel sweep processes, starting no
#    run that would not end inside the budget (issue 6)
#
# Finished runs come back in OUT/runs.tar.gz. Checkpoints are off: one holds every
# client's optimizer state (about 200 MB for the ConvNet), more than a slot returns, so a
# run cut off midway is lost either way.
set -u
data=$1 out=$2 budget=$3
py=${PYTHON:-python3}
shards=${SHARDS:-6}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
log() { echo "[$(date -u +%T) +$((SECONDS - start))s] $*" | tee -a "$out/session.log"; }
cap() { local l=$(($(left) - 30)); echo $(($1 < l ? $1 : l)); } # keep 30 s to pack up

spec=/tmp/table1-priority.toml # the committed spec, with this machine's data and no checkpoints
sed -e "s|^data-dir = .*|data-dir = \"$data\"|" -e 's|^\[base\].*|&\ncheckpoint-every = 0|' \
    experiments/table1-priority.toml >"$spec"

log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
$py -c "import torch, lpfl; print('torch', torch.__version__)" 2>&1 | tee -a "$out/session.log"

for ds in fmnist cifar10; do
    log "engine speed, $ds"
    timeout "$(cap "${BENCH_CAP:-150}")" $py benchmarks/engine_speed.py --paper "$ds" \
        --data-dir "$data" --rounds 6 --sequential-rounds 3 --json "$out/engine-speed-$ds.json" \
        >/dev/null 2>>"$out/session.log" || log "engine speed $ds: exit $?"
done

log "CIFAR-10, 200 rounds, 8 bits + moving average, alpha 0.04, seed 0"
t0=$SECONDS
timeout "$(cap "${TARGET_CAP:-240}")" $py -m lpfl sweep "$spec" --quiet --only dataset=cifar10 \
    --only alpha=0.04 --only bits=8 --only moving-average=0.9 --only seed=0 \
    >>"$out/session.log" 2>&1
log "CIFAR-10 200-round run: exit $?, wall $((SECONDS - t0)) s including start-up"

window=$(($(left) - 40))
log "Table 1 priority runs on FMNIST: $shards shards, ${window} s"
mkdir -p runs/logs
for i in $(seq 0 $((shards - 1))); do
    OMP_NUM_THREADS=2 timeout "$window" $py -m lpfl sweep "$spec" --quiet --only dataset=fmnist \
        --shard "$i/$shards" --time-budget $((window - 15)) >"runs/logs/shard-$i.log" 2>&1 &
done
wait
log "finished runs: $(ls -d runs/table1-fedavg/*/ 2>/dev/null | grep -vc partial)"
cp "$out/session.log" runs/logs/
tar czf "$out/runs.tar.gz" runs
log "packed $(du -h "$out/runs.tar.gz" | cut -f1)"
