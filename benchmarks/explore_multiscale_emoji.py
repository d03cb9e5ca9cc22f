"""The experiment behind ``efficientnet-lite0-multiscale`` (README "Images"): which pooled parts of
EfficientNet-Lite0 make the best input for an image2image head, on emoji **dev** (no test figure).

    EMBEDLAB_DATA=../shared/datasets python benchmarks/explore_multiscale_emoji.py

Every Noto and OpenMoji image goes once through the PyTorch network (clean, 224 px), keeping the
outputs of every block; the candidate descriptors are concatenations of L2-normalised parts
(means or 2x2 / 3x3 grids of means of chosen blocks, the final map, an HSV colour histogram).  For
each, a linear head (-> 512) is trained with CLIP's symmetric InfoNCE on the 1,303 train pairs
(Noto image, OpenMoji image), AdamW lr 1e-3, batch 128, 80 epochs, and the best epoch's dev
Recall@1 (186 Noto queries against all 1,862 OpenMoji images) is printed.  About 4 minutes here.
Measured 2026-11-29 (2-core Intel Xeon, 5 min): final mean 0.430; + means of blocks 7, 10, 15:
0.495 (+ histogram 0.511); final mean + 2x2 grids of blocks 7, 10, 15: 0.618 (what the registered
model computes); + block 4's grid 0.602; 3x3 grids instead 0.597; the final map's own 2x2 grid +
those grids 0.554.  Dev has 186 queries: differences under ~0.03 are noise.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

CANDIDATES = {
    "final mean": ["final"],
    "final mean + means of blocks 7, 10, 15": ["final", "m7", "m10", "m15"],
    "... + HSV histogram": ["final", "m7", "m10", "m15", "hist"],
    "final mean + 2x2 grids of blocks 7, 10, 15 (the registered model)": ["final", "g7", "g10", "g15"],
    "... + 2x2 grid of block 4": ["final", "g4", "g7", "g10", "g15"],
    "final mean + 3x3 grids of blocks 7, 10, 15": ["final", "h7", "h10", "h15"],
    "final 2x2 grid + 2x2 grids of blocks 7, 10, 15": ["gfinal", "g7", "g10", "g15"],
}


def parts(network, pixels, torch) -> dict[str, np.ndarray]:
    pool = torch.nn.functional.adaptive_avg_pool2d
    x = network._swish(network._bn0(network._conv_stem(pixels)))
    taps = {}
    for idx, block in enumerate(network._blocks):
        x = block(x)
        taps[idx] = x
    final = network._swish(network._bn1(network._conv_head(x)))
    out = {"final": final.mean((2, 3)), "gfinal": pool(final, 2).flatten(1)}
    for i in (4, 7, 10, 15):
        out[f"m{i}"] = taps[i].mean((2, 3))
        out[f"g{i}"] = pool(taps[i], 2).flatten(1)
        out[f"h{i}"] = pool(taps[i], 3).flatten(1)
    return {k: v.numpy() for k, v in out.items()}


def histogram(image) -> np.ndarray:
    """12 hues x 3 saturations x 4 values over the non-white pixels, square-rooted."""
    hsv = np.asarray(image.convert("HSV").resize((64, 64))).reshape(-1, 3).astype(int)
    rgb = np.asarray(image.convert("RGB").resize((64, 64))).reshape(-1, 3)
    keep = ~(rgb.min(1) > 245)
    hsv = hsv[keep] if keep.any() else hsv
    index = (hsv[:, 0] * 12 // 256) * 12 + (hsv[:, 1] * 3 // 256) * 4 + (hsv[:, 2] * 4 // 256)
    return np.sqrt(np.bincount(index, minlength=144) / len(index))


def features(root: Path, ids: list[str], style: str) -> dict[str, np.ndarray]:
    import torch

    from embedlab.data.images import read_image
    from embedlab.encoders.registry import load_encoder
    from embedlab.encoders.spec import ModelSpec

    tower = load_encoder(ModelSpec(model="efficientnet-lite0", backend="torch"))
    network = tower.network()
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(ids), 32):
        images = [read_image(root / "images" / style / f"{i}.png") for i in ids[start : start + 32]]
        with torch.inference_mode():
            got = parts(network, torch.from_numpy(tower.preprocess.pixels(images)), torch)
        got["hist"] = np.stack([histogram(im) for im in images])
        for k, v in got.items():
            chunks.setdefault(k, []).append(v)
    return {k: np.concatenate(v).astype(np.float32) for k, v in chunks.items()}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def dev_recall_at_1(a: np.ndarray, b: np.ndarray, train: np.ndarray, dev: np.ndarray) -> float:
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    head = torch.nn.Linear(a.shape[1], 512)
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    optimizer = torch.optim.AdamW([*head.parameters(), scale], lr=1e-3, weight_decay=0.01)
    best = 0.0
    for _ in range(80):
        order = rng.permutation(train)
        for start in range(0, len(order), 128):
            rows = torch.from_numpy(order[start : start + 128])
            x = torch.nn.functional.normalize(head(ta[rows]), dim=1)
            y = torch.nn.functional.normalize(head(tb[rows]), dim=1)
            logits = scale.clamp(max=math.log(100)).exp() * x @ y.T
            target = torch.arange(len(rows))
            loss = torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(
                logits.T, target
            )
            optimizer.zero_grad()
            (loss / 2).backward()
            optimizer.step()
        with torch.no_grad():
            q = torch.nn.functional.normalize(head(ta[torch.from_numpy(dev)]), dim=1)
            c = torch.nn.functional.normalize(head(tb), dim=1)
            best = max(best, float(np.mean((q @ c.T).argmax(1).numpy() == dev)))
    return best


def main() -> int:
    root = Path(os.environ.get("EMBEDLAB_DATA", "../shared/datasets")) / "emoji"
    items = [json.loads(line) for line in (root / "items.jsonl").read_text(encoding="utf-8").splitlines() if line]
    ids = [i["_id"] for i in items]
    split = np.array([i["split"] for i in items])
    google, openmoji = features(root, ids, "google"), features(root, ids, "openmoji")
    train, dev = np.flatnonzero(split == "train"), np.flatnonzero(split == "dev")
    for name, keys in CANDIDATES.items():
        a = np.concatenate([unit(google[k]) for k in keys], axis=1)
        b = np.concatenate([unit(openmoji[k]) for k in keys], axis=1)
        print(f"{name}: dev Recall@1 {dev_recall_at_1(a, b, train, dev):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
