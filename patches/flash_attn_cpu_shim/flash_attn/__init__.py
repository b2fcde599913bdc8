"""A CPU stand-in for flash-attn, written for soar-orl.

OpenRLHF imports a few padding helpers from flash-attn at module level (openrlhf.models imports
ring_attn_utils), but flash-attn ships CUDA builds only. This package provides exactly those
helpers in plain torch so OpenRLHF imports on CPU. It deliberately has no `ops` subpackage:
OpenRLHF then takes its pure-torch log-prob path instead of flash-attn's Triton cross-entropy.
Installed by scripts/apply_patches.py wherever the real flash-attn is not installed: always on
CPU, and on CUDA unless install.sh was given a flash-attn wheel (flash-attn 2.8.3 is source-only
on PyPI). Without the real package the trainers use PyTorch's SDPA attention (soar_orl/backend.py).
"""

__version__ = "2.8.3+soarcpushim"
