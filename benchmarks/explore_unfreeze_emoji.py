"""Exploration (not product code): does unfreezing EfficientNet-Lite0's last blocks lift emoji
image2image dev Recall@1 above the frozen-backbone head (~0.42 on dev)?

    EMBEDLAB_DATA=../shared/datasets python benchmarks/explore_unfreeze_emoji.py   # ~10 min, 2 cores
    # env: CUT=11 (first unfrozen block), VIEWS=3, EPOCHS=8, LR=1e-4, HEAD_ONLY=1 (freeze the blocks)

The prefix (stem + blocks[:CUT]) runs once per image and view (view 0 clean, views 1.. the same
seeded augmentations as ``finetune --kind image-text``); the suffix (blocks[CUT:] + head
convolution, batch norms frozen) and a 1280 -> 512 head are trained with CLIP's symmetric InfoNCE
on the train split's (Google, OpenMoji) pairs; dev Recall@1/10 each epoch ranks the dev queries
against the whole 1,862-image catalogue.  Measured 2026-11-29 (README "Align an image tower"):
0.18 -> 0.435 after 8 epochs, no better than the frozen head.  Printed only; the test split is
not touched."""

import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from embedlab.data.images import image_sha256, read_image
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.train.image_text_data import _seed, augment, read_task

CUT = int(os.environ.get("CUT", "11"))
VIEWS = int(os.environ.get("VIEWS", "3"))
EPOCHS = int(os.environ.get("EPOCHS", "8"))
LR = float(os.environ.get("LR", "1e-4"))
HEAD_ONLY = os.environ.get("HEAD_ONLY") == "1"
torch.manual_seed(0)
torch.set_num_threads(2)
enc = load_encoder(ModelSpec(model="efficientnet-lite0"))
net = enc.network().eval()
pre = enc.preprocess
train = read_task("emoji/image2image", "train")
dev = read_task("emoji/image2image", "dev")
pairs = train.pairs()
print("train pairs", len(pairs), "dev queries", len(dev.queries), "catalogue", len(dev.corpus), flush=True)


def prefix(pixels):
    with torch.no_grad():
        x = net._swish(net._bn0(net._conv_stem(torch.from_numpy(pixels))))
        for block in net._blocks[:CUT]:
            x = block(x)
        return x.to(torch.float16)


def activations(paths, views):
    out = []
    for view in range(views):
        rows = []
        for start in range(0, len(paths), 32):
            batch = paths[start : start + 32]
            imgs = [read_image(Path(p)) for p in batch]
            if view:
                imgs = [augment(im, seed=_seed(image_sha256(Path(p)), view)) for im, p in zip(imgs, batch, strict=True)]
            rows.append(prefix(pre.pixels(imgs)))
        out.append(torch.cat(rows))
        print(f"view {view}: {len(paths)} images, {time.time() - t0:.0f} s", flush=True)
    return torch.stack(out)


t0 = time.time()
train_paths = sorted({p.value for pair in pairs for p in pair})
cat_paths = sorted({i.value for i in dev.corpus.values()})
dev_q = sorted(dev.queries)
dev_paths = [dev.queries[q].value for q in dev_q]
tr = activations(train_paths, VIEWS)
cat = activations(cat_paths, 1)[0]
dq = activations(dev_paths, 1)[0]
row = {p: i for i, p in enumerate(train_paths)}
cat_row = {p: i for i, p in enumerate(cat_paths)}
relevant = []
for q in dev_q:
    docs = [d for d, g in dev.qrels.judgments[q].items() if g > 0]
    relevant.append({cat_row[dev.corpus[d].value] for d in docs})


class Suffix(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList(net._blocks[CUT:])
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
        self.proj = torch.nn.Linear(1280, 512)
        self.scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, x):
        x = x.float()
        for b in self.blocks:
            x = b(x)
        x = self.act(self.bn1(self.conv_head(x))).mean((2, 3))
        x = torch.nn.functional.normalize(x, dim=1)
        return torch.nn.functional.normalize(self.proj(x), dim=1)


model = Suffix()
model.train()
for m in model.modules():  # frozen BN statistics
    if isinstance(m, torch.nn.BatchNorm2d):
        m.eval()
backbone = [p for n, p in model.named_parameters() if not n.startswith(("proj", "scale"))]
for p in backbone:
    p.requires_grad_(not HEAD_ONLY)
opt = torch.optim.AdamW(
    [{"params": backbone, "lr": LR}, {"params": [*model.proj.parameters(), model.scale], "lr": 1e-3}],
    weight_decay=0.05,
)
BATCH = 128
steps = math.ceil(len(pairs) / BATCH) * EPOCHS
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1, s / steps))))


def embed(x):
    with torch.no_grad():
        model.eval()
        out = torch.cat([model(x[i : i + 128]) for i in range(0, len(x), 128)])
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        return out


def dev_r1():
    c, q = embed(cat), embed(dq)
    top = (q @ c.T).topk(10, dim=1).indices.numpy()
    r1 = np.mean([top[i, 0] in relevant[i] for i in range(len(dev_q))])
    r10 = np.mean([bool(set(top[i]) & relevant[i]) for i in range(len(dev_q))])
    return r1, r10


print("epoch 0 dev R@1/R@10", dev_r1(), flush=True)
rng = np.random.default_rng(0)
a_idx = np.array([row[p[0].value] for p in pairs])
b_idx = np.array([row[p[1].value] for p in pairs])
for epoch in range(1, EPOCHS + 1):
    order = rng.permutation(len(pairs))
    losses = []
    for s in range(0, len(order), BATCH):
        r = order[s : s + BATCH]
        va, vb = rng.integers(0, VIEWS, len(r)), rng.integers(0, VIEWS, len(r))
        a = model(tr[va, a_idx[r]])
        b = model(tr[vb, b_idx[r]])
        logits = model.scale.clamp(max=math.log(100)).exp() * a @ b.T
        t = torch.arange(len(r))
        loss = (torch.nn.functional.cross_entropy(logits, t) + torch.nn.functional.cross_entropy(logits.T, t)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    print(f"epoch {epoch}: loss {np.mean(losses):.3f} dev R@1/R@10 {dev_r1()} ({time.time() - t0:.0f} s)", flush=True)
