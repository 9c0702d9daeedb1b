#!/usr/bin/env bash
# The GPU check of issue 17 in one call: the harness's stage bench (harness.bench.stages --device cuda) and the anchors
# (scripts/gpu_anchors.py: bare loop, TRL, transformers generate) on random-weight SmolLM2-shaped Llamas.
# Each step has its own time limit and writes JSON (and a log) under OUTDIR, so a failure or a limit hit in one
# step still leaves the others' figures.
#
#   scripts/gpu_run.sh OUTDIR              # on a GPU (wheels of trl/datasets/dill/multiprocess in .whl/, if any)
#   PY=.venv/bin/python scripts/gpu_run.sh /tmp/out cpu   # a CPU dry run with toy sizes (tests the script)
#   ENGINE_WARM_RUN=1 scripts/gpu_run.sh OUTDIR  # also the first call after HFEngine.warm, instead of the check
#                                                 # (the device tool brings back at most 8 files)
set -u
OUT=${1:?usage: gpu_run.sh OUTDIR [cpu]}
MODE=${2:-cuda}
PY=${PY:-python3}
LOGS=$(mktemp -d)  # logs go to one archive at the end: the device tool brings back at most 8 files
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HARNESS_RESULTS=/tmp/harness-results
if [ "$MODE" = cuda ]; then
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
  $PY -m pip install -q --no-deps --no-build-isolation --no-index . >"$LOGS/install.log" 2>&1 || tail -5 "$LOGS/install.log"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/gpu.txt"
  S360=smollm2-360m; A360=360m; S17=smollm2-1.7b; A17=1.7b; DEV=cuda; DT=bfloat16
  STEPS=20; STEPS17=10; B=8; P=128; R=256; GB=64; NEW=128
else
  S360=toy; A360=toy; S17=toy; A17=toy; DEV=cpu; DT=float32
  STEPS=4; STEPS17=2; B=2; P=8; R=8; GB=4; NEW=8
fi
step() {  # step NAME LIMIT_S CMD...  (the CPU dry run gets a generous limit: the machine may be busy)
  local name=$1 limit=$2; shift 2
  [ "$MODE" = cpu ] && limit=600
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  echo "=== $name: exit $? after $((SECONDS - t0)) s"
  grep -v -i "warn\|^ *$" "$LOGS/$name.log" | tail -12
}
# 0. same outputs on the device: static decoder (graphs) vs dynamic vs generate, tiny float32 model
[ -z "${ENGINE_WARM_RUN:-}" ] && step check 40 $PY scripts/gpu_check.py --device $DEV --out "$OUT/check.json"
# 1. decoding: the hf engine (first call after warm_up, warm) vs transformers generate, batch 64 x 128 new tokens;
#    then the same in a fresh process whose engine warmed once (HFEngine.warm) before its first call
step anchors_gen_360m 60 $PY scripts/gpu_anchors.py --size $A360 --device $DEV --cases "" --gen-batch $GB --new $NEW \
  --out "$OUT/anchors_gen_360m.json"
[ -n "${ENGINE_WARM_RUN:-}" ] && step anchors_gen_360m_engine_warm 60 $PY scripts/gpu_anchors.py --size $A360 --device $DEV \
  --cases "" --gen-batch $GB --new $NEW --engine-warm --out "$OUT/anchors_gen_360m_engine_warm.json"
# 2. memory and step time at 1.7B: bare, harness (checkpointing off/on), TRL (off/on), DPO one epoch
step anchors_dpo_1.7b 110 $PY scripts/gpu_anchors.py --size $A17 --device $DEV --cases dpo:1 --steps $STEPS17 \
  --batch $B --prompt $P --resp $R --harness-gc --skip-gen --out "$OUT/anchors_dpo_1.7b.json"
# 3. the stage bench at 360M (checkpointing off, as the 360M anchors)
step bench_360m 70 $PY -m harness.bench --device $DEV --dtype $DT --model random:$S360 --method dpo --steps $STEPS \
  --batch $B --prompt-len $P --resp-len $R --gen-batch $GB --new-tokens $NEW --repeats 2 --epochs 1 \
  --no-compare --json "$OUT/bench_360m.json"
# 4. SFT / DPO / DPO 4 epochs at 360M against bare and TRL (the table)
step anchors_train_360m 110 $PY scripts/gpu_anchors.py --size $A360 --device $DEV --cases sft:1,dpo:1,dpo:E --harness-gc \
  --steps $STEPS --batch $B --prompt $P --resp $R --skip-gen --out "$OUT/anchors_train_360m.json"
# 5. the stage bench at 1.7B with checkpointing on
step bench_1.7b 55 $PY -m harness.bench --device $DEV --dtype $DT --model random:$S17 --method dpo --steps $STEPS17 \
  --batch $B --prompt-len $P --resp-len $R --gen-batch $GB --new-tokens 64 --repeats 1 --epochs 1 \
  --gradient-checkpointing --no-compare --json "$OUT/bench_1.7b.json"
tar czf "$OUT/logs.tgz" -C "$LOGS" .
ls -la "$OUT"
