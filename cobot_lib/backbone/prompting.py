"""Box-prompted forward pass of SAM, batched the way training needs it.

One image-encoder pass per image, then one mask-decoder call per image with *all* its boxes:
the decoder repeats the image embedding across prompts itself, so supervising every instance
costs little more than supervising one. Outputs are single-mask logits
(``multimask_output=False``), the setting used for box prompts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

__all__ = ["encode_images", "decode_boxes", "predict_masks", "upsample_logits"]


def encode_images(sam: Sam, images: torch.Tensor) -> torch.Tensor:
    """Image embeddings (B, C, S/16, S/16) of normalised, padded images (B, 3, S, S)."""
    size = sam.image_encoder.img_size
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
        raise ValueError(
            f"images must have shape (B, 3, {size}, {size}) (normalised and padded), "
            f"got {tuple(images.shape)}"
        )
    return sam.image_encoder(images)


def decode_boxes(sam: Sam, embedding: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Low-resolution mask logits (N, 1, S/4, S/4) for N xyxy boxes on one image embedding."""
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) in xyxy pixels, got {tuple(boxes.shape)}")
    if embedding.dim() == 3:
        embedding = embedding.unsqueeze(0)
    sparse, dense = sam.prompt_encoder(points=None, boxes=boxes.to(embedding.dtype), masks=None)
    logits, _ = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return logits


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
        logits = decode_boxes(sam, embedding, image_boxes.to(embedding.device))
        out.append(upsample_logits(logits, size) if upsample else logits)
    return out
