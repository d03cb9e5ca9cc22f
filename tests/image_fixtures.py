"""Image test data: a tiny randomly initialised CLIP folder and a tiny generated image-text dataset.

The CLIP model has real architecture and random weights (no weights can be downloaded here):
it exercises the two-tower plumbing (text tower, image tower, one space), not quality.  The
dataset mirrors ``../shared/datasets/emoji``'s layout: images in ``images/<style>/<id>.png``,
three BEIR tasks whose image records carry an ``"image"`` path relative to the task folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import write_beir

ITEMS = {  # id -> (caption, colour, shape)
    "i1": ("red circle", (220, 30, 30), "ellipse"),
    "i2": ("blue square", (30, 60, 220), "rectangle"),
    "i3": ("green circle", (30, 180, 60), "ellipse"),
    "i4": ("yellow square", (230, 210, 20), "rectangle"),
    "i5": ("black ring", (0, 0, 0), "ring"),
    "i6": ("purple bar", (130, 40, 160), "bar"),
}
TINY_WORDS = sorted({w for caption, _, _ in ITEMS.values() for w in caption.split()} | {"a", "photo", "of"})


def draw_item(path: Path, colour: tuple[int, int, int], shape: str, *, size: int = 40) -> Path:
    """An RGBA picture on a transparent background stored as black (like the emoji PNGs)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    box = (6, 6, size - 6, size - 6)
    if shape == "ellipse":
        draw.ellipse(box, fill=(*colour, 255))
    elif shape == "rectangle":
        draw.rectangle(box, fill=(*colour, 255))
    elif shape == "ring":
        draw.ellipse(box, outline=(*colour, 255), width=5)
    else:
        draw.rectangle((4, size // 2 - 4, size - 4, size // 2 + 4), fill=(*colour, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_image_tasks(root: Path) -> dict[str, Path]:
    """``images/{a,b}/<id>.png`` (b: byte-identical copies of a, under other names) and the tasks
    text2image (caption -> a), image2text (b -> caption), image2image (b -> a)."""
    for item, (_, colour, shape) in ITEMS.items():
        draw_item(root / "images" / "a" / f"{item}.png", colour, shape)
        (root / "images" / "b").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "images" / "a" / f"{item}.png", root / "images" / "b" / f"{item}.png")
    images_a = [{"_id": i, "title": "", "text": "", "image": f"../images/a/{i}.png"} for i in ITEMS]
    images_b = [{"_id": f"q-{i}", "text": "", "image": f"../images/b/{i}.png"} for i in ITEMS]
    captions_doc = [{"_id": i, "title": "", "text": c} for i, (c, _, _) in ITEMS.items()]
    captions_query = [{"_id": f"q-{i}", "text": c} for i, (c, _, _) in ITEMS.items()]
    qrels = [(f"q-{i}", i, 1) for i in ITEMS]
    return {
        "text2image": write_beir(root / "text2image", images_a, captions_query, qrels),
        "image2text": write_beir(root / "image2text", captions_doc, images_b, qrels),
        "image2image": write_beir(root / "image2image", images_a, images_b, qrels),
    }


def write_tiny_clip(folder: Path, *, image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> Path:
    """A CLIPModel with random weights (seeded) from a small config, a word-level tokenizer and a
    preprocessor config: a complete CLIP folder as ``save_pretrained`` writes it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + TINY_WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 3)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>"
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 16,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": list(image_mean), "image_std": [0.5, 0.5, 0.5], "size": {"shortest_edge": 32}})
    )
    return folder
