"""Prompted forward pass of SAM (boxes, points, or both), batched the way training needs it.

One image-encoder pass per image, then one mask-decoder call per image with *all* its objects:
the decoder repeats the image embedding across prompts itself, so supervising every instance
costs little more than supervising one. Outputs are single-mask logits
(``multimask_output=False``) for every kind of prompt, so that training, evaluation and
prediction score the same mask.

Prompts (``Prompts``) live in the model's input frame: the image resized so its longest side
is S, before padding (``data.transforms.map_boxes`` / ``map_points`` take them there from
original pixels, as SAM's ``ResizeLongestSide.apply_boxes`` / ``apply_coords`` do). Point
labels follow segment_anything: 1 foreground, 0 background, -1 "not a point" (padding, so that
objects with fewer points share one tensor). With points and no box, SAM's prompt encoder adds
one padding point itself, as its ``SamPredictor`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

__all__ = [
    "Prompts",
    "encode_images",
    "decode_prompts",
    "predict_masks",
    "upsample_logits",
]


@dataclass
class Prompts:
    """The prompts of N objects on one image, in input-frame pixels (xyxy boxes, xy points).

    boxes: (N, 4) or None; points: (N, P, 2) or None; labels: (N, P) with 1 / 0 / -1
    (foreground / background / padding), required with points. At least one kind is given.
    """

    boxes: torch.Tensor | None = None
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.boxes is None and self.points is None:
            raise ValueError("Prompts needs boxes, points, or both")
        if self.boxes is not None and (self.boxes.dim() != 2 or self.boxes.shape[1] != 4):
            raise ValueError(f"boxes must be (N, 4) xyxy pixels, got {tuple(self.boxes.shape)}")
        if self.points is not None:
            if self.points.dim() != 3 or self.points.shape[2] != 2:
                shape = tuple(self.points.shape)
                raise ValueError(f"points must be (N, P, 2) xy pixels, got {shape}")
            if self.labels is None or tuple(self.labels.shape) != tuple(self.points.shape[:2]):
                shape = None if self.labels is None else tuple(self.labels.shape)
                raise ValueError(
                    f"point labels must be (N, P) = {tuple(self.points.shape[:2])}, got {shape}"
                )
            if self.boxes is not None and len(self.boxes) != len(self.points):
                raise ValueError(f"{len(self.boxes)} boxes but {len(self.points)} point sets")

    def __len__(self) -> int:
        return len(self.boxes) if self.boxes is not None else len(self.points)

    def to(self, device: torch.device | str) -> Prompts:
        """A copy on ``device``: coordinates float32, labels int64."""

        def move(x: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
            return None if x is None else torch.as_tensor(x).to(device, dtype)

        return Prompts(
            move(self.boxes, torch.float32),
            move(self.points, torch.float32),
            move(self.labels, torch.int64),
        )


def encode_images(sam: Sam, images: torch.Tensor) -> torch.Tensor:
    """Image embeddings (B, C, S/16, S/16) of normalised, padded images (B, 3, S, S)."""
    size = sam.image_encoder.img_size
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
        raise ValueError(
            f"images must have shape (B, 3, {size}, {size}) (normalised and padded), "
            f"got {tuple(images.shape)}"
        )
    return sam.image_encoder(images)


def decode_prompts(
    sam: Sam, embedding: torch.Tensor, prompts: Prompts
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low-resolution mask logits (N, 1, S/4, S/4), predicted IoU (N, 1)) for N objects on one
    image embedding (C, s, s) or (1, C, s, s)."""
    if embedding.dim() == 3:
        embedding = embedding.unsqueeze(0)
    dtype = embedding.dtype
    boxes = None if prompts.boxes is None else prompts.boxes.to(dtype)
    points = None
    if prompts.points is not None:
        points = (prompts.points.to(dtype), prompts.labels)
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )


def upsample_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of low-resolution logits to the model's input frame (size x size)."""
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


def predict_masks(
    sam: Sam, images: torch.Tensor, boxes: list[torch.Tensor], upsample: bool = True
) -> list[torch.Tensor]:
    """Mask logits for every box of every image: a list of (N_i, 1, S, S) (S/4 without upsample)."""
    if len(boxes) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(boxes)} box tensors")
    embeddings = encode_images(sam, images)
    size = sam.image_encoder.img_size
    out = []
    for embedding, image_boxes in zip(embeddings, boxes, strict=True):
        logits, _ = decode_prompts(sam, embedding, Prompts(boxes=image_boxes.to(embedding.device)))
        out.append(upsample_logits(logits, size) if upsample else logits)
    return out
