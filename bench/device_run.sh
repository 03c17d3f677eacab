#!/usr/bin/env bash
# One prepared GPU run (issue #16): on a machine with one CUDA GPU and this tree (with .venv),
# from the repository root, in at most 8.5 minutes (the limits below add up to 500 s):
#   a. tests   the CUDA tests: pytest -m "cuda and not slow" (emulator on CUDA == CPU for every
#              spike/u/v, TF32 off/on exactness of the conv path, integer SNN branch and training
#              on CUDA)                                       -> cuda_tests_cuda.json
#   b. emulator   the emulator against Lava (Lava on this machine's CPU, the reference) and
#              against its float32 floor on CUDA, batch 64 and 1024 -> emulator_vs_lava_cuda.json
#   c. train_cost  SNN2ANN, BPTT and a plain ANN step at batch 128, T = 4 and 8, bf16 autocast
#              and channels_last on and off: time/iteration, peak CUDA memory -> train_cost_cuda.json
#   d. cifar   the project's CIFAR-10 recipe (bench/cifar_fast.py, configs/cifar10_cpu.toml:
#              30 ANN + 6 SNN2ANN epochs, SGD, BatchNorm not decayed, cutout 8; bf16 autocast on CUDA),
#              $CIFAR_EPOCHS epochs (default: the recipe's 36; more than its 30 ANN epochs),
#              then its exported network on the emulator          -> cifar_fast_cuda.json
# Each part runs under its own time limit; a failed or timed-out part is recorded as such in
# device_run_status_cuda.json and the others still run. A one-screen summary is printed and
# saved as device_run_summary.txt. Results go to bench/results (--out DIR), logs to
# runs/device_run_cuda/ (--logs DIR).
#
#   bench/device_run.sh           # on the GPU machine (make device-run)
#   bench/device_run.sh --dry     # every part on the CPU at tiny sizes (< ~2 min, 1 thread):
#                                 # *_dry.json in runs/device_run_dry/ (tests/test_device_run.py)
# Environment: PY (python, default .venv/bin/python, else python3), DATA (folder holding
# cifar10-jpeg/, default shared/data or ../shared/data), CIFAR_EPOCHS, LIMIT_SCALE (the dry
# run's time limits times this; default from the load, see below).
set -u
cd "$(dirname "$0")/.."

DRY=0
OUT=""
LOGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry) DRY=1 ;;
        --out) OUT="$2"; shift ;;
        --logs) LOGS="$2"; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "device_run.sh: unknown argument '$1' (--dry, --out DIR, --logs DIR)" >&2; exit 2 ;;
    esac
    shift
done

PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
if [ "$DRY" = 1 ]; then
    TAG=dry DEVICE=cpu
    OUT="${OUT:-runs/device_run_dry}"
    LOGS="${LOGS:-$OUT/logs}"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    #      tests emulator train_cost cifar   (seconds; the sum bounds the run)
    LIMITS=(60 60 60 90)
else
    TAG=cuda DEVICE=cuda
    OUT="${OUT:-bench/results}"
    LOGS="${LOGS:-runs/device_run_cuda}"
    LIMITS=(60 75 95 270)
fi
# The dry run's limits hold under load: they are scaled by LIMIT_SCALE (default: 1 + the
# 1-minute load average per CPU, rounded up, at most 5: a loaded 2-core machine runs each
# single-threaded part several times slower). The GPU run keeps its limits (LIMIT_SCALE=1):
# they add up to its device time.
if [ -z "${LIMIT_SCALE:-}" ]; then
    LIMIT_SCALE=1
    if [ "$DRY" = 1 ]; then
        LIMIT_SCALE=$("$PY" -c "import math, os
print(min(5, 1 + math.ceil(os.getloadavg()[0] / (os.cpu_count() or 1))))")
    fi
fi
case "$LIMIT_SCALE" in
    ''|*[!0-9]*|0) echo "device_run.sh: LIMIT_SCALE=$LIMIT_SCALE must be a positive integer" >&2; exit 2 ;;
esac
for i in "${!LIMITS[@]}"; do LIMITS[i]=$((LIMITS[i] * LIMIT_SCALE)); done
echo "time limits (x$LIMIT_SCALE): ${LIMITS[*]} s"
mkdir -p "$OUT" "$LOGS"
STATUS_TSV="$LOGS/status.tsv"
: > "$STATUS_TSV"
T_START=$SECONDS

if [ "$DRY" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "device_run.sh: no CUDA GPU visible to $PY (use --dry for the CPU rehearsal)" >&2
    exit 2
fi
if [ -z "${DATA:-}" ]; then
    DATA=shared/data
    [ -f "$DATA/cifar10-jpeg/cifar10_jpeg.npz" ] || DATA=../shared/data
fi

# part NAME LIMIT_S RESULT_FILE COMMAND...: run COMMAND under `timeout`, log to $LOGS/NAME.log,
# append "name rc seconds limit result log" to the status table.
part() {
    local name="$1" limit="$2" result="$3"
    shift 3
    local t0=$SECONDS
    echo "== $name (limit ${limit} s): $*"
    timeout --kill-after=5 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    local dt=$((SECONDS - t0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$limit" "$result" "$LOGS/$name.log" >> "$STATUS_TSV"
    echo "   $name: exit $rc after ${dt} s"
}

# a. CUDA tests (in the dry run they skip: no GPU; they are collected and reported)
part tests "${LIMITS[0]}" "$OUT/cuda_tests_$TAG.json" \
    "$PY" bench/device_run_summary.py --pytest "$OUT/cuda_tests_$TAG.json" -- \
    -m "cuda and not slow" -p no:cacheprovider tests

# b. emulator vs Lava and vs its float floor
if [ "$DRY" = 1 ]; then
    EMU_ARGS=(--device cpu --networks small --steps 4 --lava-samples 2 --repeats 1 --batches 4,8
              --neuron eager)
else
    EMU_ARGS=(--device cuda --networks small,cifar --batches 64,1024 --steps 16 --lava-samples 6
              --repeats 3)
fi
part emulator "${LIMITS[1]}" "$OUT/emulator_vs_lava_$TAG.json" \
    "$PY" bench/emulator_vs_lava.py "${EMU_ARGS[@]}" --out "$OUT/emulator_vs_lava_$TAG.json"

# c. training cost
if [ "$DRY" = 1 ]; then
    COST_ARGS=(--device cpu --threads 1 --batch 2 --iters 1 --warmup 1 --steps 2
               --methods snn2ann bptt ann --bf16 on --channels-last on)
else
    COST_ARGS=(--device cuda --batch 128 --iters 10 --warmup 3 --steps 4 8
               --methods snn2ann bptt ann --bf16 on off --channels-last on off)
fi
part train_cost "${LIMITS[2]}" "$OUT/train_cost_$TAG.json" \
    "$PY" bench/train_cost.py "${COST_ARGS[@]}" --out "$OUT/train_cost_$TAG.json"

# d. fast CIFAR-10 recipe
if [ "$DRY" = 1 ]; then
    CIFAR_ARGS=(--device cpu --threads 1 --epochs 2 --train-subset 256 --test-subset 64
                --batch-size 64 --eval-batch 64 --cache "$LOGS/cache" --out "$LOGS/cifar_fast"
                --set train.pretrain_epochs=1)
else
    CIFAR_ARGS=(--device cuda --out "$LOGS/cifar_fast")
    [ -n "${CIFAR_EPOCHS:-}" ] && CIFAR_ARGS+=(--epochs "$CIFAR_EPOCHS")
fi
# The recipe's bf16_cpu is for CPUs with native bf16; the dry run must also pass on CPUs
# without it, and on CUDA train.bf16 (on by default) is the autocast that applies.
CIFAR_ARGS+=(--config configs/cifar10_cpu.toml --set train.bf16_cpu=false)
part cifar "${LIMITS[3]}" "$OUT/cifar_fast_$TAG.json" \
    "$PY" bench/cifar_fast.py "${CIFAR_ARGS[@]}" --data "$DATA" --results "$OUT/cifar_fast_$TAG.json"

"$PY" bench/device_run_summary.py --status "$STATUS_TSV" --tag "$TAG" --out "$OUT" \
    --wall $((SECONDS - T_START))
