#!/usr/bin/env bash
# Issue 15: the motion-heavy second phase (data/motion-heavy: the stage-3 cache less the probe clips, plus the motion clips
# twice; built as described in checkpoints/README.md), then the held-out evals and the direction-word probe.
cd "$(dirname "$0")/.."
OUT=runs/motion-heavy
videogen train --config configs/shapes-t2v/3-dit.yaml model.pretrained=configs/shapes-t2v/weights/dit-motion-one-step1400 \
  data.cache=data/motion-heavy output_dir=$OUT train.max_steps=400 train.lr_scheduler=constant train.lr_warmup_steps=20 \
  train.ema_decay=null checkpoint.every=200 checkpoint.keep_last=5 --resume latest > $OUT.log 2>&1
python benchmarks/probe_motion_words.py $OUT/final data/motion-one/probe | tail -1
for task in t2v i2v; do
  videogen eval --model $OUT/final --task $task --prompts holdout --seeds 8 --out $OUT/eval-$task --no-progress 2>&1 | grep -E "accuracy|PSNR" | sed "s/^/$task /"
done
echo done
