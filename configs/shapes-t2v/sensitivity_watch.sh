#!/usr/bin/env bash
# Caption sensitivity over stage-3 training: for every new checkpoint of runs/shapes2-dit, save its EMA pipeline
# (a resume with max_steps = that step saves it at once) and run `videogen eval --sensitivity` on it; one line per
# checkpoint goes to runs/shapes2-dit/sensitivity.jsonl (step, then the loss rise of each word kind at sigma 0.9,
# all frames noised). Runs beside the training (one thread), e.g.
#   nohup bash configs/shapes-t2v/sensitivity_watch.sh > runs/sensitivity-watch.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
RUN=runs/shapes2-dit
OUT=runs/probes
mkdir -p $OUT
export OMP_NUM_THREADS=1
while true; do
  for ck in $(ls -d $RUN/checkpoints/step-* 2>/dev/null); do
    step=$((10#${ck##*step-}))
    [ -f $OUT/dit2-$step/sens/sensitivity.json ] && continue
    tmp=$(mktemp -d) && cp -r "$ck" "$tmp/ck" 2>/dev/null || { rm -rf "$tmp"; continue; }  # pruned while copied
    videogen train --config configs/shapes-t2v/3-dit.yaml --resume "$tmp/ck" train.max_steps=$step \
      output_dir=$OUT/dit2-$step > $OUT/dit2-$step.log 2>&1 \
      && videogen eval --model $OUT/dit2-$step/final --prompts holdout --seeds 2 --sensitivity \
           --out $OUT/dit2-$step/sens --no-progress >> $OUT/dit2-$step.log 2>&1 \
      && python -c "import json,sys; d=json.load(open(sys.argv[1]))['plain']['variants']; \
print(json.dumps(dict(step=int(sys.argv[2]), **{k: round(100*v['rise'][0], 2) for k, v in d.items()})))" \
           $OUT/dit2-$step/sens/sensitivity.json $step >> $RUN/sensitivity.jsonl
    rm -rf "$tmp"
  done
  [ -d $RUN/final ] && break
  sleep 120
done
