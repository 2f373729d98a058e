#!/usr/bin/env bash
# The second-generation embedded default, every stage in order (the commands of each stage's YAML header). Each
# stage is skipped when its output exists, and a stopped training stage resumes (--resume latest), so running this
# again continues where it stopped. CPU: run it with nohup in the background, e.g.
#   nohup bash configs/shapes-t2v/train.sh > runs-shapes2.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
C=configs/shapes-t2v
[ -f data/shapes-solid/manifest.jsonl ] || videogen synth --out data/shapes-solid --num 4000 --seed 0 --camera-fraction 0 --texture-fraction 0
[ -f data/shapes-one/manifest.jsonl ] || videogen synth --out data/shapes-one --num 6000 --seed 1 --camera-fraction 0 --texture-fraction 0 --max-objects 1
if [ ! -f data/shapes-mix/manifest.jsonl ]; then
  mkdir -p data/shapes-mix
  (sed 's#"clips/#"../shapes-solid/clips/#g' data/shapes-solid/manifest.jsonl
   sed 's#"clips/#"../shapes-one/clips/#g' data/shapes-one/manifest.jsonl) > data/shapes-mix/manifest.jsonl
fi
[ -d runs/shapes2-vae-images/final ] || videogen train --config $C/1-vae-images.yaml --resume latest
[ -d runs/shapes2-vae-video2/final ] || videogen train --config $C/2-vae-video.yaml --resume latest
# Stage 2b: the decoder alone on full 17-frame clips (the latents, so the cache and the DiT below, stay valid).
[ -d runs/shapes2-vae-decoder/final ] || videogen train --config $C/2b-vae-decoder.yaml --resume latest
# The stage-3 start: the first stage-3 run's DiT, text encoder and tokenizer at step 4400 (committed, fp16), with the
# stage-2 v2 VAE swapped in (warm start: it had learned colour and count; motion words come later in training).
[ -d runs/shapes2-init/final ] || videogen train --config $C/3-dit.yaml train.max_steps=0 \
  model.pretrained=$C/weights/dit-v1-step4400 data.cache=null model.vae=runs/shapes2-vae-video2/final/vae \
  output_dir=runs/shapes2-init
[ -f data/shapes-mix/cache-v2/.done ] || { videogen cache --data data/shapes-mix --model runs/shapes2-init/final \
  --out data/shapes-mix/cache-v2 --max-sequence-length 40 --batch-size 16 --image-latents && touch data/shapes-mix/cache-v2/.done; }
[ -d runs/shapes2-dit/final ] || videogen train --config $C/3-dit.yaml --resume latest
# The pipeline to ship: the stage-3 DiT and text encoder with the stage-2b decoder (same encoder, same latents).
[ -d runs/shapes2-final/final ] || videogen train --config $C/3-dit.yaml train.max_steps=0 \
  model.pretrained=runs/shapes2-dit/final model.vae=runs/shapes2-vae-decoder/final/vae \
  output_dir=runs/shapes2-final
