"""Give a bundle exported before bundles carried them its float weights and resolved recipe.

    python scripts/attach_bundle_weights.py export/speaker configs/speaker.yaml data/speech/val

The encoder is recovered from the bundle's own model_float32.tflite (BatchNorm was folded into the
convolutions, so it becomes the identity) and must reproduce it on real windows of DATA_DIR (cosine
above 0.9999); then weights.safetensors and recipe.yaml are written and the manifest hashes them.
model.tflite and every other file are left as they are. Needs the train and export extras.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgesiam.core.windowing import frame
from edgesiam.data.readers import iter_recordings, reading_spec, scan_dataset
from edgesiam.model.interpreters import load_model
from edgesiam.train.weights import attach_weights


def real_windows(bundle: Path, data: Path, count: int) -> np.ndarray:
    """Up to ``count`` windows of ``data`` through the bundle's front-end."""
    model = load_model(bundle)
    info = scan_dataset(data)
    out: list[np.ndarray] = []
    for _, x in iter_recordings(info, model.sample_rate, progress=False, spec=reading_spec(model)):
        out.append(model.frontend(frame(x, model.window, model.hop)))
        if sum(len(f) for f in out) >= count:
            break
    return np.concatenate(out)[:count].astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("recipe", type=Path, help="the recipe the bundle was trained with")
    parser.add_argument("data", type=Path, help="a dataset folder for the parity check")
    parser.add_argument("--windows", type=int, default=300)
    args = parser.parse_args()
    features = real_windows(args.bundle, args.data, args.windows)
    worst = attach_weights(args.bundle, args.recipe, features)
    print(f"{args.bundle}: weights and recipe attached; min cosine to the float model {worst:.7f}")


if __name__ == "__main__":
    main()
