#!/usr/bin/env bash
# The CPU-budget rows of the README "Results" table, as run on the 2-core development machine.
# Every call appends to OUT/results.json and rewrites OUT/results.md + time_to_accuracy.html;
# rerunning resumes unfinished runs. The full GPU recipe is the same commands without
# --max-minutes (3200 epochs, early stopping) and with --seeds 0 1 2 3 4 5 6 7 8 9.
set -euo pipefail
OUT=${OUT:-out/benchmark-cpu}
NV=${NV:-.venv/bin/nesf-viz}
# keep freed activation memory in the heap (measured by benchmarks/train_speed.py --malloc-tuning:
# float32 step 1.70 -> 1.08 s, bf16 0.52 -> 0.42 s); glibc only. The heap then never shrinks and
# can fragment: LCS6Å/perov_5 runs held 1.3-5.7 GB, ICSG3D --periodic 13 GB, and carbon_24 reached
# 24 GB (the whole machine) at epoch 6, so the carbon_24 row below runs without it (3.4 GB).
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
$NV benchmark --datasets ybco13 --folds 20 --recipe fast --max-minutes 1.5 --decode fast --out "$OUT"
$NV benchmark --datasets perov_5 --seeds 0 1 2 --recipe fast --max-minutes 8 --decode fast --out "$OUT"
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
# the reference's encoding fixed: wavelengths 32 A down to 1 A (one-to-one over the box) with x kept, 10 epochs
$NV benchmark --datasets lcs6 --recipe fast --pe-freqs 6 --pe-wavelength 32 --pe-keep-input --epochs 10 --decode fast --out "$OUT"
# periodic fields (minimum-image training targets + periodic decoding) vs the default rows above, same budgets
$NV benchmark --datasets perov_5 --recipe fast --periodic --max-minutes 8 --decode fast --out "$OUT"
$NV benchmark --datasets icsg3d --recipe fast --periodic --max-minutes 8 --decode fast --out "$OUT"
# where the periodic option loses: the perov_5 periodic checkpoint decoded with its predicted vs the true lattice
.venv/bin/python benchmarks/periodic_lattice.py --checkpoint "$OUT/runs/fast+periodic/perov_5/seed0/best.pt" \
    --dataset perov_5 | tee "$OUT/periodic_lattice.md"
# carbon_24 (the carbon row), default allocator (see the top)
env -u MALLOC_MMAP_MAX_ -u MALLOC_TRIM_THRESHOLD_ -u MALLOC_TOP_PAD_ $NV benchmark --datasets carbon_24 --recipe fast --max-minutes 8 --decode fast --out "$OUT"
# equal epochs instead of equal minutes, for the two options that cost epochs (own folder: same labels)
$NV benchmark --datasets perov_5 --recipe fast --periodic --epochs 54 --decode fast --out "$OUT-equal-epochs"
$NV benchmark --datasets icsg3d+synthetic --recipe fast --epochs 37 --decode fast --out "$OUT-equal-epochs"
