#!/usr/bin/env bash
# One GPU slot's work, time-boxed. Run from the repository root on the GPU machine:
#
#   [PARTS="check table1"] experiments/gpu_session.sh DATA_DIR OUT_DIR BUDGET_SECONDS
#
# PARTS picks what the slot does, in this order (default: check table1; issue 3's
# measurements, parts kernels target bench profile, were made on 2026-11-27's H200 slot):
#   check    lpfl's Triton rounding kernels on this GPU, values against the eager ops, and
#            the engine with its step captured as a CUDA graph (the default) against
#            eager steps, bit for bit (tests/cuda_graph_check.py) (in OUT/session.log,
#            about 70 s); where one fails, the runs of target and the sweeps round
#            eagerly, or run without graphs; then the kernels' milliseconds per call,
#            stochastic and to nearest (OUT/rounding-speed.json, about 20 s), and runs
#            cut off and resumed on the GPU (tests/gpu_resume_check.py, about 30 s)
#   kernels  check, then a round's uploads on the wire, one by one vs together
#            (OUT/wire-round-speed.json), convs, and pooling and GroupNorm over the
#            stack, torch's vmap rules vs candidate formulations, a fused Triton
#            GroupNorm + ReLU among them, its values checked first
#            (benchmarks/fused_norm.py, stage_ops.py; log)
#   convs    each ConvNet layer stacked over clients, grouped convolution vs im2col, with
#            and without TF32 (OUT/stacked-conv.json, about 30 s): whether im2col, whose
#            backward no longer uses F.fold (2026-11-28), pays for the hidden layers at
#            32 bits, where their grouped float32 convolution is slow
#   graph    what the CUDA graph of the vectorized step buys: captured vs eager ms per
#            step (benchmarks/graph_probe.py; log)
#   target   the 200-round CIFAR-10 run at 8 bits + moving average, timed end to end
#            (issue 3's target); it is also a cell of Table 1, at seed TARGET_SEED
#            (default 0; another seed times the same work and adds a run to the table)
#   bench    engine speed in the paper's setting, BENCH_DATASETS (default: cifar10
#            fmnist), GPU ablations after the engine pairs (issue 3): OUT/engine-speed-*.json;
#            SEQUENTIAL_ROUNDS=0 leaves the sequential engine out (about 60 s a dataset)
#   profile  one vectorized round, op by op (device and host time) and by Python function,
#            at 32 and 8 bits (OUT/step-profile.txt)
#   table1   Table 1 priority runs on SWEEP_DATASET (default fmnist; cifar10 needs its
#            data staged over three calls: experiments/stage_data.py) (issue 6)
#   methods  the other-methods table on FMNIST (issue 5)
# GPU_ROWS picks bench's CUDA-only rows (engine_speed.py --gpu-rows; default all).
# The sweeps run on SHARDS processes (default 1: on an H200, 8 processes sharing the GPU
# made 1.3 rounds/s against 1.5 for one alone; with the step captured as a CUDA graph the
# GPU, not the host, bounds a round again). A sweep starts no run that would not end
# inside its window, judging each by the runs of its kind it has made, else by the
# newest one of its kind on this GPU model in results/gpu-runs (earlier slots' runs):
# a run cut off by the window is lost (2026-11-27, call 5: a 32-bit CIFAR-10 run that
# needed about 115 s started in a 121-s window, before sweeps judged by earlier runs).
# RUN_SECONDS (default 150 s) is the shortest window worth starting a sweep in: about the
# slowest priority run, 200 rounds at 32 bits, 0.49 s (CIFAR-10) to 0.56 s (FMNIST) a
# round on the H200 with graphs, plus about 15 s of start-up (8 bits: 70-90 s a run).
# With both, table1 and methods split what is left of the slot.
#
# A slot, step by step, from the machine that holds the data (a warm GPU machine keeps
# /root/d only while calls follow each other within about 30 s):
#   python experiments/stage_data.py fashion-mnist          # or: cifar10 fashion-mnist
#   then one call per folder it prints, each with carry [".stage/N"], the last one also
#   running the slot:  mkdir -p /root/d && cp -r .stage/N/* /root/d/ &&
#     LPFL_COMMIT=<git rev-parse --short=12 HEAD> PARTS="check table1 methods" \
#     experiments/gpu_session.sh /root/d $OUT <seconds left, less about 60>
#   and commit the finished run folders of OUT/runs.tar.gz into results/gpu-runs/.
# The first slot after 2026-11-28's changes (noise shared by four elements, resume on a
# GPU, FedFTG's stacked teachers, col2im without F.fold) also measures im2col for the
# hidden convolutions, about 2 minutes more: PARTS="check convs bench table1 methods"
# BENCH_DATASETS=fmnist SEQUENTIAL_ROUNDS=0 GPU_ROWS=im2col_hidden_convs.
#
# At most 8 files come back from a slot: these parts write 8 (with session.log).
# Finished runs come back in OUT/runs.tar.gz. Checkpoints are off: one holds every
# client's optimizer state (about 200 MB for the ConvNet), more than a slot returns, so a
# run cut off midway is lost either way.
set -u
data=$1 out=$2 budget=$3
py=${PYTHON:-python3}
shards=${SHARDS:-1}
run_seconds=${RUN_SECONDS:-150}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
log() { echo "[$(date -u +%T) +$((SECONDS - start))s] $*" | tee -a "$out/session.log"; }
cap() { local l=$(($(left) - 30)); echo $(($1 < l ? $1 : l)); } # keep 30 s to pack up

parts=" ${PARTS:-check table1} "
want() { [[ $parts == *" $1 "* ]]; }
# Settings every sweep run gets: no checkpoints, and eager rounding if the kernels failed.
base_extra='checkpoint-every = 0'
# A committed sweep spec with this machine's data and $base_extra, as /tmp/NAME.toml, its
# runs under ${2:-results/gpu-runs}: the committed runs of earlier slots travel with the
# repository, so the sweep skips them and writes the new ones beside them.
local_spec() {
    local extra=${base_extra//$'\n'/\\n} # sed writes each \n as a new line
    sed -e "s|^data-dir = .*|data-dir = \"$data\"|" -e "s|^\\[base\\].*|&\\n$extra|" \
        -e "s|^out = \"runs/|out = \"${2:-results/gpu-runs}/|" "experiments/$1.toml" >"/tmp/$1.toml"
    echo "/tmp/$1.toml"
}
# Run a spec's runs (on dataset $3 alone, if given) on $shards processes for $2 seconds.
sweep_shards() {
    local spec=$1 window=$2 name
    name=$(basename "$spec" .toml)
    if ((window < run_seconds)); then
        log "$name: skipped, ${window} s left is too short to finish a run"
        return
    fi
    log "$name on ${3:-all datasets}: $shards shards, ${window} s"
    mkdir -p runs/logs
    for i in $(seq 0 $((shards - 1))); do
        OMP_NUM_THREADS=$(($(nproc) / shards)) timeout "$window" $py -m lpfl sweep "$spec" --quiet \
            ${3:+--only dataset=$3} --shard "$i/$shards" --time-budget $((window - 15)) \
            >"runs/logs/$name-shard-$i.log" 2>&1 &
    done
    wait
}
log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
$py -c "import torch, lpfl; print('torch', torch.__version__)" 2>&1 | tee -a "$out/session.log"
# The machine gets a copy of the tree without .git: the sender names the commit (results
# files and benchmark JSON record it), e.g. LPFL_COMMIT=$(git rev-parse --short=12 HEAD).
log "lpfl commit: ${LPFL_COMMIT:-not named (set LPFL_COMMIT when sending the tree)}"

if want check || want kernels; then
    log "Triton rounding kernels: values"
    timeout "$(cap 90)" $py tests/triton_kernel_check.py cuda >/tmp/kernel-check.txt 2>&1
    rc=$?
    cat /tmp/kernel-check.txt >>"$out/session.log"
    log "kernel check: exit $rc ($(tail -n 1 /tmp/kernel-check.txt))"
    if ((rc != 0)); then # no sweep result may rest on kernels that failed their check
        base_extra+=$'\nfused-quant = "off"'
        log "sweeps round with eager ops"
    fi
    log "the engine with CUDA graphs: values against eager steps"
    timeout "$(cap 150)" $py tests/cuda_graph_check.py >>"$out/session.log" 2>&1
    rc=$?
    log "CUDA graph check: exit $rc"
    if ((rc != 0)); then
        base_extra+=$'\ncuda-graph = false'
        log "target and sweeps run without CUDA graphs"
    fi
fi
if want check || want kernels; then
    timeout "$(cap 90)" $py benchmarks/rounding_speed.py >"$out/rounding-speed.json" \
        2>>"$out/session.log" || log "rounding speed: exit $?"
    log "a run cut off and resumed on this GPU against an uninterrupted one"
    timeout "$(cap 120)" $py tests/gpu_resume_check.py >>"$out/session.log" 2>&1
    log "resume check: exit $? (sweeps here save no checkpoints; this checks lpfl run --resume)"
fi
if want kernels; then
    timeout "$(cap 60)" $py benchmarks/wire_round_speed.py --device cuda \
        >"$out/wire-round-speed.json" 2>>"$out/session.log" || log "wire round speed: exit $?"
fi
if want convs || want kernels; then
    timeout "$(cap 60)" $py benchmarks/stacked_conv.py >"$out/stacked-conv.json" \
        2>>"$out/session.log" || log "stacked conv: exit $?"
fi
if want kernels; then
    log "pooling and GroupNorm over the stack: torch under vmap vs candidates"
    timeout "$(cap 60)" $py benchmarks/fused_norm.py >>"$out/session.log" 2>&1 ||
        log "fused GroupNorm + ReLU kernels: values differ from torch or failed (exit $?)"
    timeout "$(cap 60)" $py benchmarks/stage_ops.py >>"$out/session.log" 2>&1 ||
        log "stage ops: exit $?" # into the log: a slot returns at most 8 files
fi

if want graph; then
    log "CUDA graph of the vectorized step: eager vs replayed ms per step"
    timeout "$(cap 150)" $py benchmarks/graph_probe.py >>"$out/session.log" 2>&1 ||
        log "graph probe: exit $?"
fi

if want target; then
    log "CIFAR-10, 200 rounds, 8 bits + moving average, alpha 0.04, seed ${TARGET_SEED:-0}"
    t0=$SECONDS
    # Its own folder, so that it runs (and is timed) even where results/ holds this cell.
    timeout "$(cap "${TARGET_CAP:-400}")" $py -m lpfl sweep "$(local_spec table1-priority runs)" --quiet \
        --only dataset=cifar10 --only alpha=0.04 --only bits=8 --only moving-average=0.9 \
        --only seed="${TARGET_SEED:-0}" >>"$out/session.log" 2>&1
    log "CIFAR-10 200-round run: exit $?, wall $((SECONDS - t0)) s including start-up"
fi

if want bench; then
    for ds in ${BENCH_DATASETS:-cifar10 fmnist}; do
        log "engine speed, $ds"
        timeout "$(cap "${BENCH_CAP:-150}")" $py benchmarks/engine_speed.py --paper "$ds" \
            --data-dir "$data" --rounds 6 --sequential-rounds "${SEQUENTIAL_ROUNDS:-3}" \
            ${GPU_ROWS:+--gpu-rows "$GPU_ROWS"} \
            --json "$out/engine-speed-$ds.json" >/dev/null 2>>"$out/session.log" ||
            log "engine speed $ds: exit $?"
    done
fi

if want profile; then
    log "profile of one vectorized round"
    timeout "$(cap 120)" $py benchmarks/step_profile.py --python >"$out/step-profile.txt" 2>&1 ||
        log "step profile: exit $?"
fi

sweeps=$( (want table1 && echo 1; want methods && echo 1) | wc -l)
if ((sweeps > 0)); then
    window=$((($(left) - 40) / sweeps))
    want table1 && sweep_shards "$(local_spec table1-priority)" "$window" "${SWEEP_DATASET-fmnist}"
    want methods && sweep_shards "$(local_spec methods-fmnist)" "$(($(left) - 40))"
fi
log "finished runs: $(ls -d runs/*/*/ results/gpu-runs/*/*/ 2>/dev/null | grep -v -e partial -e logs -c)"
mkdir -p runs/logs
cp "$out/session.log" runs/logs/
tar czf "$out/runs.tar.gz" runs results/gpu-runs
log "packed $(du -h "$out/runs.tar.gz" | cut -f1)"
