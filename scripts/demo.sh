#!/usr/bin/env bash
# The main job on the embedded default: meta-train briefly on the 20 default source languages (and the
# romanised copies of the 9 in scripts other than Latin),
# then score Yoruba (never seen in training) zero-shot and after adapting on 4 examples per class, without and
# with its unlabelled text (the training split's texts, labels unused: the language's own centre).
# LoRA in the top 4 layers (XMETA_DEMO_LORA_LAYERS; 0 = every layer, the default recipe): a meta-step half as long,
# so the demo ends in about 16 minutes on 2 cores instead of about 30.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

out=${XMETA_DEMO_OUT:-runs/demo}
steps=${XMETA_DEMO_STEPS:-60}
lang=${XMETA_DEMO_LANG:-yo}
lora_layers=${XMETA_DEMO_LORA_LAYERS:-4}

xmeta meta-train --task cldr-emoji --out "$out/meta" --steps "$steps" --lora_layers "$lora_layers" --overwrite
xmeta evaluate --model "$out/meta" --task cldr-emoji --lang "$lang" --shots 0,4 --seeds 3 \
    --out "$out/eval-$lang" --overwrite
xmeta evaluate --model "$out/meta" --task cldr-emoji --lang "$lang" --shots 0,4 --seeds 3 --target_text train \
    --out "$out/eval-$lang-text" --overwrite
xmeta adapt --model "$out/meta" --task cldr-emoji --lang "$lang" --shots 4 --out "$out/$lang" --overwrite
python - "$out/eval-$lang/results.json" "$out/eval-$lang-text/results.json" <<'PY'
import json, sys
for path, reading in zip(sys.argv[1:], ("", " with its unlabelled text")):
    result = json.load(open(path))["languages"][0]
    before, after = result["summary"]["0"], result["summary"]["4"]
    print(f"{result['lang']} macro-F1{reading}: before (zero-shot) {before['macro_f1_mean']:.3f}  ->  after 4 examples/class "
          f"{after['macro_f1_mean']:.3f} ± {after['macro_f1_std']:.3f} ({after['n_seeds']} seeds)")
PY
