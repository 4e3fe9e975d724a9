#!/usr/bin/env bash
# The benchmark suite as run on a GPU machine (the device tool's H200): four streams of benchmarks share
# the GPU side by side, so per-run seconds are pessimistic. Every record carries the GPU's name.
#
#   bash bench/gpu_suite.sh OUT_DIR                 # full sizes (GPU)
#   DRY=1 bash bench/gpu_suite.sh /tmp/dry          # the same commands on small SciFact/NFCorpus subsets, CPU
#
# On the device machine the repo carries .device/ (wheels, an fp16 copy of all-MiniLM-L6-v2, faiss-cpu and
# the two datasets), which this script unpacks first. Results come back as OUT_DIR/results.json (merge
# with `python -m bench.results --merge`) plus docs.tar.gz (PNGs, significance tables) and logs.
set -uo pipefail
OUT=$(realpath -m "${1:-/tmp/gpu-suite}"); LOGS=$OUT/logs; mkdir -p "$LOGS"
STREAM_SECONDS=${STREAM_SECONDS:-420}
PY=${PY:-python3}
if [ -d .device ] && [ ! -f /tmp/dev/.ready ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/wheels/*.whl
  mkdir -p /tmp/dev/data && tar xJf .device/minilm.tar.xz -C /tmp/dev && tar xJf .device/faiss.tar.xz -C /tmp/site
  tar xJf .device/data.tar.xz -C /tmp/dev/data
  # the carried copy is fp16 (to fit the transfer); train and encode from float32, as the original
  $PY -c "from safetensors.torch import load_file, save_file; f='/tmp/dev/minilm/model.safetensors'; \
save_file({k: v.float() for k, v in load_file(f).items()}, f, metadata={'format': 'pt'})"
  export PYTHONPATH=/tmp/site RETRIEVER_DEFAULT_MODEL=/tmp/dev/minilm RETRIEVER_DATA_PATH=/tmp/dev/data
  if ! $PY -c "import datasets; datasets.Dataset.from_dict({'a': [1]})" 2>"$LOGS/datasets-import.txt"; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .device/wheels-alt/*.whl
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
  $PY -c "import torch, transformers, sentence_transformers, faiss, datasets; print(torch.__version__, \
torch.cuda.is_available(), transformers.__version__, sentence_transformers.__version__, faiss.__version__, \
datasets.__version__)" >> "$OUT/gpu.txt" 2>&1
  touch /tmp/dev/.ready
fi
[ -d .device ] && export PYTHONPATH=/tmp/site RETRIEVER_DEFAULT_MODEL=/tmp/dev/minilm RETRIEVER_DATA_PATH=/tmp/dev/data
SCIFACT=scifact NFCORPUS=nfcorpus MAXP=10000 MAXG=4000 STEPS=""
if [ -n "${DRY:-}" ]; then
  SCIFACT=scimini NFCORPUS=nfmini MAXP=64 MAXG=32 STEPS="--max-steps 2"
  export RETRIEVER_DATA_PATH=$LOGS/data
  $PY -m bench.make_subset scifact "$LOGS/data/scimini" && $PY -m bench.make_subset nfcorpus "$LOGS/data/nfmini"
fi
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/suite.log"; }
run() {  # run one benchmark, keep going on failure
  log "start: $*"
  if "$@" >> "$LOGS/$STREAM.log" 2>&1; then log "done: $*"; else log "FAILED ($?): $*"; fi
}

log "prepare: zero-shot indexes, mined negatives, derived dataset"
$PY - "$SCIFACT" "$NFCORPUS" >> "$LOGS/prepare.log" 2>&1 <<'PYEOF'
import logging, sys
logging.basicConfig(level=logging.INFO)
from bench.cet import prepare
from bench.rerankers import ensure_negatives
from retriever.data import load_dataset
for name in sys.argv[1:]:
    ensure_negatives(load_dataset(name), name)
prepare(f"{sys.argv[2]}-hidden50", 42)
PYEOF
log "prepared (rc $?)"

stream_losses() {
  STREAM=losses
  run $PY -m bench.train_losses --dataset $SCIFACT $STEPS
  run $PY -m bench.train_losses --dataset $SCIFACT --loss mw --temperature 0.05 --no-zero-shot $STEPS
  run $PY -m bench.train_losses --dataset $SCIFACT --loss mw --temperature 0.1 --no-zero-shot $STEPS
  run $PY -m bench.train_losses --dataset $SCIFACT --loss mw --mw-normalize batch --no-zero-shot $STEPS
  run $PY -m bench.train_losses --dataset $NFCORPUS --max-pairs $MAXP $STEPS
  run $PY -m bench.train_losses --dataset $NFCORPUS --loss mw --temperature 0.05 --max-pairs $MAXP --no-zero-shot $STEPS
  run $PY -m bench.train_losses --dataset $NFCORPUS --loss mw --temperature 0.1 --max-pairs $MAXP --no-zero-shot $STEPS
}
stream_hard() {
  STREAM=hard
  run $PY -m bench.hard_negatives --dataset $SCIFACT $STEPS
  run $PY -m bench.hard_negatives --dataset $NFCORPUS --max-pairs $MAXP $STEPS
}
stream_fullmodel() {  # issue 20's full-model rows; issue 19: STAR on dense- vs hybrid-mined negatives, same budget
  STREAM=fullmodel
  run $PY -m bench.hard_negatives --dataset $SCIFACT --only star --epochs 3 --mine-mode dense $STEPS
  run $PY -m bench.hard_negatives --dataset $SCIFACT --only star --epochs 3 --mine-mode hybrid $STEPS
  run $PY -m bench.train_losses --dataset $SCIFACT --loss mnrl --epochs 3 --min-epochs 3 --no-zero-shot $STEPS
}
stream_rerank() {
  STREAM=rerank
  run $PY -m bench.rerankers --dataset $SCIFACT --arch cross-encoder $STEPS
  run $PY -m bench.rerankers --dataset $NFCORPUS --arch cross-encoder --max-groups $MAXG $STEPS
  for _ in $(seq 60); do grep -qE "(done|FAILED).*hard_negatives --dataset $NFCORPUS" "$OUT/suite.log" && break; sleep 5; done
  run $PY -m bench.rerankers --dataset $SCIFACT --arch cross-encoder --first-stage best $STEPS
  run $PY -m bench.rerankers --dataset $NFCORPUS --arch cross-encoder --max-groups $MAXG --first-stage best $STEPS
}
stream_cet() {
  STREAM=cet
  run $PY -m bench.cet --dataset $NFCORPUS-hidden50 --max-pairs $MAXP --max-groups $MAXG $STEPS
  run $PY -m bench.cet --dataset $SCIFACT $STEPS
  run $PY -m bench.cet --dataset $NFCORPUS-hidden50 --max-pairs $MAXP --max-groups $MAXG --debias-ratio 10 $STEPS
}
stream_rerank2() {
  STREAM=rerank2
  run $PY -m bench.rerankers --dataset $NFCORPUS --arch cross-encoder --max-groups $MAXG $STEPS
}
stream_losses2() {
  STREAM=losses2
  run $PY -m bench.train_losses --dataset $NFCORPUS --loss contrastive --loss mw --max-pairs $MAXP --no-zero-shot $STEPS
  run $PY -m bench.train_losses --dataset $NFCORPUS --loss mw --temperature 0.05 --max-pairs $MAXP --no-zero-shot $STEPS
}
stream_hard2() {
  STREAM=hard2
  run $PY -m bench.hard_negatives --dataset $NFCORPUS --max-pairs $MAXP $STEPS
}
stream_cet2() {
  STREAM=cet2
  run $PY -m bench.cet --dataset $NFCORPUS-hidden50 --max-pairs $MAXP --max-groups $MAXG $STEPS
}
export -f log run stream_losses stream_hard stream_fullmodel stream_rerank stream_cet stream_rerank2 stream_losses2 stream_hard2 stream_cet2
export OUT LOGS PY SCIFACT NFCORPUS MAXP MAXG STEPS
for s in ${STREAMS:-losses hard rerank cet}; do timeout "$STREAM_SECONDS" bash -c "stream_$s" & done
wait
log "streams finished"
cp bench/results.json "$OUT/results.json"
tar czf "$OUT/docs.tar.gz" docs models/*/train_summary.json models/*/log.jsonl 2>/dev/null
log "packed"
tar czf "$OUT/logs.tar.gz" -C "$LOGS" --exclude=data . 2>/dev/null && rm -rf "$LOGS"
