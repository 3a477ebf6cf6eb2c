#!/usr/bin/env bash
# Build benchmarks/.peers-venv: k-diffusion and diffusers, for side-by-side benchmarks only.
# They are never seedshard dependencies. Usage: bash benchmarks/setup_peers.sh [python3]
#
# k-diffusion's package __init__ imports its training stack (torchvision, clip, clean-fid, wandb);
# the torchvision wheel the registry serves is a CUDA build that fails to load next to the CPU
# torch used here. So torch is pinned (constraint file) and k-diffusion goes in with --no-deps:
# its sampling module needs only scipy, torchsde, torchdiffeq and tqdm (see peers.py for the import).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.peers-venv"
python="${1:-python3}"
torch_version="$("$here/../.venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null \
                 || echo 2.13.0)"

rm -rf "$venv"
"$python" -m venv "$venv"
constraints="$venv/constraints.txt"
echo "torch==$torch_version" > "$constraints"
"$venv/bin/pip" install -q "torch==$torch_version"
"$venv/bin/pip" install -q -c "$constraints" diffusers scipy torchsde torchdiffeq tqdm einops
"$venv/bin/pip" install -q --no-deps k-diffusion
"$venv/bin/python" - <<'PY'
import torch, diffusers, importlib.metadata as md
print(f"peers venv ready: torch {torch.__version__}, diffusers {diffusers.__version__}, "
      f"k-diffusion {md.version('k-diffusion')}")
PY
