#!/usr/bin/env bash
# Issue 15: does the default's DiT learn direction words when the data is only single objects moving left/right/up/down
# and the first frame is always given (the toy probe's setting, on real latents)? Warm start from the shipped DiT;
# the loss rise when the direction words are swapped (benchmarks/probe_motion_words.py, 120 held-out clips) at every
# 200th step. Needs the stage-3 cache (configs/shapes-t2v/3-dit.yaml, step 3); STEPS (default 1000) sets the length.
#   python benchmarks/probe_motion_subset.py && nohup bash benchmarks/probe_motion_one.sh > runs/motion-one.txt 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=runs/motion-one
[ -n "${SKIP_BASE:-}" ] || python benchmarks/probe_motion_words.py configs/shapes-t2v/weights/dit-v2-step2513 \
  data/motion-one/probe | tail -1 | sed 's/^/step 0: /'
videogen train --config configs/shapes-t2v/3-dit.yaml model.pretrained=configs/shapes-t2v/weights/dit-v2-step2513 \
  data.cache=data/motion-one/train output_dir=$OUT train.image_dropout=0.0 train.max_steps=${STEPS:-1000} \
  train.lr_scheduler=constant train.lr_warmup_steps=20 train.ema_decay=null train.caption_dropout=0.0 \
  checkpoint.every=200 checkpoint.keep_last=10 --resume latest > $OUT.log 2>&1
for ck in $(ls -d $OUT/checkpoints/step-*); do
  step=$((10#${ck##*step-}))
  [ -f $OUT-s$step/probe.txt ] && { cat $OUT-s$step/probe.txt; continue; }
  videogen train --config configs/shapes-t2v/3-dit.yaml model.pretrained=configs/shapes-t2v/weights/dit-v2-step2513 \
    data.cache=data/motion-one/train output_dir=$OUT-s$step train.image_dropout=0.0 train.max_steps=$step \
    train.lr_scheduler=constant train.lr_warmup_steps=20 train.ema_decay=null train.caption_dropout=0.0 \
    --resume $ck > $OUT-s$step.log 2>&1
  python benchmarks/probe_motion_words.py $OUT-s$step/final data/motion-one/probe | tail -1 | sed "s/^/step $step: /" \
    | tee $OUT-s$step/probe.txt
done
echo done
