"""Apply soar-orl's patches/ to the installed openrlhf, idempotently.

    python scripts/apply_patches.py --backend cpu|cuda

Run by run.sh whenever patches/ changes. Each `patches/*.patch` is a unified diff against the
pinned openrlhf release (site-packages layout, -p1). To be idempotent without trusting the
current state of site-packages, every run starts from pristine files: the first run keeps a
backup of openrlhf verified against pip's RECORD hashes, later runs restore it, then apply all
patches in name order. An installed openrlhf of another version is refused. Unless the real
flash-attn is installed (on CUDA, from a wheel given to install.sh), the flash-attn shim
(patches/flash_attn_cpu_shim) is installed too: on CPU always, on CUDA by default.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run by the venv's Python before run.sh sets PYTHONPATH

from soar_orl.backend import flash_attn_installed  # noqa: E402  (light: no heavy imports)
PATCHES = ROOT / "patches"
PINS = ROOT / "requirements" / "pins.txt"


def pinned_version(package: str) -> str:
    for line in PINS.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and name.strip() == package:
            return version.strip()
    raise SystemExit(f"{PINS} pins no version of {package}")


def record_mismatches(dist: metadata.Distribution, root: Path) -> list[str]:
    """Files of `dist` under openrlhf/ whose content differs from pip's RECORD, relative to root."""
    bad = []
    for entry in dist.files or []:
        if not entry.parts or entry.parts[0] != "openrlhf" or entry.hash is None:
            continue
        path = root / entry
        digest = base64.urlsafe_b64encode(hashlib.new(entry.hash.mode, path.read_bytes()).digest())
        if digest.rstrip(b"=").decode() != entry.hash.value:
            bad.append(str(entry))
    return bad


def restore_pristine(site: Path, backup: Path, dist: metadata.Distribution) -> None:
    if not backup.exists():
        modified = record_mismatches(dist, site)
        if modified:
            raise SystemExit(
                "openrlhf in site-packages differs from its wheel and no pristine backup exists "
                f"({len(modified)} files, e.g. {modified[0]}); reinstall it with "
                "`pip install --no-deps --force-reinstall openrlhf==<pin>` and rerun"
            )
        shutil.copytree(site / "openrlhf", backup / "openrlhf")
    shutil.rmtree(site / "openrlhf")
    shutil.copytree(backup / "openrlhf", site / "openrlhf")


def apply_patch(patch_file: Path, site: Path) -> None:
    result = subprocess.run(
        ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-d", str(site), "-i", str(patch_file)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"patch {patch_file.name} does not apply:\n{result.stdout}{result.stderr}")


def install_flash_attn_shim(site: Path) -> None:
    target = site / "flash_attn"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PATCHES / "flash_attn_cpu_shim" / "flash_attn", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["cpu", "cuda"], required=True)
    args = parser.parse_args()

    want = pinned_version("openrlhf")
    dist = metadata.distribution("openrlhf")
    if dist.version != want:
        raise SystemExit(f"patches/ are written against openrlhf=={want}, found {dist.version}: refusing")
    site = Path(dist.locate_file(""))
    restore_pristine(site, Path(sys.prefix) / "soar-pristine", dist)
    patch_files = sorted(PATCHES.glob("*.patch"))
    for patch_file in patch_files:
        apply_patch(patch_file, site)
    shim = not flash_attn_installed()
    if shim:
        install_flash_attn_shim(site)
    names = ", ".join(p.name for p in patch_files) or "none"
    print(f"[soar-orl] openrlhf {want} patched ({names}){'; flash-attn shim' if shim else ''} ({args.backend})")


if __name__ == "__main__":
    main()
