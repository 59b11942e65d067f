#!/usr/bin/env bash
# The CPU-budget rows of the README "Results" table, as run on the 2-core development machine.
# Every call appends to OUT/results.json and rewrites OUT/results.md + time_to_accuracy.html;
# rerunning resumes unfinished runs. The full GPU recipe is the same commands without
# --max-minutes (3200 epochs, early stopping) and with --seeds 0 1 2 3 4 5 6 7 8 9.
set -euo pipefail
OUT=${OUT:-out/benchmark-cpu}
NV=${NV:-.venv/bin/nesf-viz}
# keep freed activation memory in the heap (measured by benchmarks/train_speed.py --malloc-tuning:
# float32 step 1.70 -> 1.08 s, bf16 0.52 -> 0.42 s); glibc only, harmless elsewhere
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=536870912
# LCS6Å, the paper's own split: paper recipe (float32, batch 128) vs the fast recipe (bf16, batch 64),
# same budget, both decoded with the paper's decoder on the whole test split
$NV benchmark --datasets lcs6 --recipe paper --max-minutes 15 --decode paper --out "$OUT"
$NV benchmark --datasets lcs6 --recipe fast --max-minutes 15 --decode paper --out "$OUT"
# same checkpoint, fast decoder: does DecodeConfig.fast() lose accuracy on a trained model?
$NV evaluate --data ../shared/data/nesf_paper/lcs6_test.csv --checkpoint "$OUT/runs/fast/lcs6/seed0/best.pt" \
    --json "$OUT/lcs6_fast_recipe_fast_decode.json" --decode fast --keep-cell
# ICSG3D without / with the synthetic cubic-prototype augmentation; YBCO13 folds; perov_5
$NV benchmark --datasets icsg3d icsg3d+synthetic --recipe fast --max-minutes 8 --decode fast --out "$OUT"
$NV benchmark --datasets ybco13 --folds 5 --recipe fast --max-minutes 1.5 --decode fast --out "$OUT"
$NV benchmark --datasets perov_5 --recipe fast --max-minutes 8 --decode fast --out "$OUT"
# every decoder option against the paper's decoder on the fast-recipe LCS6Å checkpoint (first 100 test crystals)
.venv/bin/python benchmarks/decode_options.py --checkpoint "$OUT/runs/fast/lcs6/seed0/best.pt" \
    --data ../shared/data/nesf_paper/lcs6_test.csv --limit 100 | tee "$OUT/decode_options.md"
# bf16 alone (paper recipe otherwise: batch 128, same seed, init and batches), 8 epochs like the paper-recipe row
$NV benchmark --datasets lcs6 --recipe bf16 --epochs 8 --decode fast --out "$OUT"
# the paper-recipe checkpoint with the fast decoder too, to compare with the bf16 row
$NV evaluate --data ../shared/data/nesf_paper/lcs6_test.csv --checkpoint "$OUT/runs/paper/lcs6/seed0/best.pt" \
    --json "$OUT/lcs6_paper_recipe_fast_decode.json" --decode fast --keep-cell
# positional encoding option (the reference's nesf_pe, 10 frequencies) vs the fast-recipe row, equal epochs (20)
$NV benchmark --datasets lcs6 --recipe fast --pe-freqs 10 --epochs 20 --decode fast --out "$OUT"
