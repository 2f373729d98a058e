#!/usr/bin/env bash
# Issue 15, phase 2 after benchmarks/probe_motion_one.sh: from its motion-only checkpoint (committed as
# configs/shapes-t2v/weights/dit-motion-one-step1400), the full stage-3 mix again with the image dropped for half the
# samples (configs/shapes-t2v/3-dit.yaml's settings, lr constant, no EMA): does text-to-video come back while the
# motion words stay in use? Then the held-out evals (T2V and I2V, 8 seeds) and the direction-word probe.
#   nohup bash benchmarks/probe_motion_mix.sh > runs/motion-mix.txt 2>&1 &      (STEPS, default 600)
# The motion-heavy mix (data/motion-heavy, from benchmarks/probe_motion_subset.py):
#   CACHE=data/motion-heavy OUT=runs/motion-heavy STEPS=400 bash benchmarks/probe_motion_mix.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/motion-mix}
videogen train --config configs/shapes-t2v/3-dit.yaml model.pretrained=configs/shapes-t2v/weights/dit-motion-one-step1400 \
  data.cache=${CACHE:-data/shapes-mix/cache-v2} output_dir=$OUT train.max_steps=${STEPS:-600} train.lr_scheduler=constant train.lr_warmup_steps=20 \
  train.ema_decay=null checkpoint.every=200 checkpoint.keep_last=5 --resume latest > $OUT.log 2>&1
python benchmarks/probe_motion_words.py $OUT/final data/motion-one/probe | tail -1
for task in t2v i2v; do
  videogen eval --model $OUT/final --task $task --prompts holdout --seeds 8 --out $OUT/eval-$task --no-progress 2>&1 \
    | grep -E "accuracy|PSNR" | sed "s/^/$task /"
done
echo done
