#!/bin/bash
# Rebuild the bundled default emulator, sedhpc/emulator/data/default.h5, with sedhpc's own
# commands (run from the repository root). Every step resumes after an interruption.
# v1.0 on: the embedded SPS with its default DL07 sequence, dl07 = "mw" (the set configs record
# it). Cost here (2 cores): training set 300k draws ≈ 29 min per core-set (1 rank), test set
# 20k draws ≈ 2 min, each window's first schedule ≈ 15–40 min and its warm restart ≈ 20–40 min
# (measured one thread per window, two windows side by side; run the commands below in parallel
# with --threads 1 the same way).
set -euo pipefail
RANKS=${RANKS:-1}
run() { if [ "$RANKS" -gt 1 ]; then mpiexec -n "$RANKS" python -m sedhpc "$@"; else sedhpc "$@"; fi; }
run generate --config tools/default_emulator/generate.toml --no-progress
run generate --config tools/default_emulator/testset.toml --no-progress
# lowest window: log10(zred) and log10(dust2 + 1e-4) inputs, long first step, then a warm
# restart from that network
sedhpc train trainset_default --windows 0.001,2.25 --log-inputs zred,dust2:1e-4 --width 256 \
    --depth 5 --patience 60 --max-epochs 2000 --threads 2 --seed 0 --out emu_0.001_2.25.h5
sedhpc train trainset_default --windows 0.001,2.25 --log-inputs zred,dust2:1e-4 \
    --init emu_0.001_2.25.h5 --lr 3e-4,1e-4,1e-5 --batch 2048,8192,65536 --width 256 --depth 5 \
    --patience 100 --max-epochs 500 --threads 2 --seed 0 --out emu_0.001_2.25_r.h5
# (v1.0) a second warm restart of the lowest window, the same way
sedhpc train trainset_default --windows 0.001,2.25 --log-inputs zred,dust2:1e-4 \
    --init emu_0.001_2.25_r.h5 --lr 3e-4,1e-4,1e-5 --batch 2048,8192,65536 --width 256 \
    --depth 5 --patience 100 --max-epochs 500 --threads 2 --seed 0 --out emu_0.001_2.25_rr.h5
# middle window: zred linear, log10(dust2 + 1e-4), then a warm restart
sedhpc train trainset_default --config tools/default_emulator/linear_z.toml --windows 1.75,4.25 \
    --log-inputs dust2:1e-4 --width 256 --depth 5 --patience 40 --max-epochs 400 --threads 2 \
    --seed 0 --out emu_1.75_4.25.h5
sedhpc train trainset_default --config tools/default_emulator/linear_z.toml --windows 1.75,4.25 \
    --log-inputs dust2:1e-4 --init emu_1.75_4.25.h5 --lr 3e-4,1e-4,1e-5 --batch 2048,8192,65536 \
    --width 256 --depth 5 --patience 100 --max-epochs 500 --threads 2 --seed 0 \
    --out emu_1.75_4.25_r.h5
# highest window: zred and dust2 linear, then a warm restart
sedhpc train trainset_default --config tools/default_emulator/linear_z.toml --windows 3.75,6 \
    --width 256 --depth 5 --patience 40 --max-epochs 400 --seed 0 --out emu_3.75_6.h5
sedhpc train trainset_default --config tools/default_emulator/linear_z.toml --windows 3.75,6 \
    --init emu_3.75_6.h5 --lr 3e-4,1e-4,1e-5 --batch 2048,8192,65536 --width 256 --depth 5 \
    --patience 100 --max-epochs 500 --threads 2 --seed 0 --out emu_3.75_6_r.h5
sedhpc stitch emu_0.001_2.25_rr.h5 emu_1.75_4.25_r.h5 emu_3.75_6_r.h5 --out emu_stitched.h5
# parameter-dependent emulator σ, fitted on a calibration set of its own seed (≈ 1.5 min)
run generate --config tools/default_emulator/calset.toml --no-progress
sedhpc emulator-sigma emu_stitched.h5 --calset calset_default --testset testset_default \
    --out sedhpc/emulator/data/default.h5
sedhpc validate-emulator sedhpc/emulator/data/default.h5 --testset testset_default \
    --out docs/default_emulator
