"""The training engine: prompted fine-tuning of SAM with BCE + Dice (Eq. 22) and Adam.

    result = run_experiment("configs/demo/tiny_nuclei_lora_cobot.yaml", ["runtime.seed=1"])
    python -m cobot_lib.train CONFIG.yaml key=value ...           # one process
    torchrun --nproc_per_node=4 -m cobot_lib.train CONFIG.yaml    # DDP, one process per GPU

Protocol (Sec. 5.1): every step takes ``optim.batch_size`` images (the paper: 1) and supervises
all instances of each image from one image-encoder pass (``prompting``), with the prompts
(``data.prompt``: jittered boxes and/or sampled points) drawn by the dataset. Each epoch ends
with a checkpoint (``checkpoint.py``, atomic) and an adapter export (``peft.save_adapter``);
``RUN_DIR/metrics.jsonl`` gets one JSON line per logged step, epoch, validation and evaluation.

Validation (``validation.py``; on unless ``data.val_split`` is null): the zero-shot model is
scored on the validation split first, then after every epoch (or every
``validation.every_steps`` steps); ``RUN_DIR/adapter`` is the best adapter so far,
``RUN_DIR/last_adapter`` the last epoch's; training may stop early (``validation.patience``);
at the end the model holds the best weights and one line compares zero-shot, best and final
validation scores (with a warning when training never beat zero-shot). Validation runs with
the random state saved and restored, so it does not change what is trained. Without
validation, ``RUN_DIR/adapter`` is the last epoch's, as before.

A run continues from its checkpoint exactly: the sample order is a function of (seed, epoch),
the box jitter and point prompts of (seed, index, epoch) (the datasets' ``set_epoch``) and the
remaining randomness (dropout) comes from the saved RNG states, so a stopped-and-resumed run ends
with the same weights as an uninterrupted one (model selection resumes from the history).

Every step's loss goes through the divergence guard (``guard.py``) before its update: a NaN or
a loss far above its running median stops the run, naming the step, the samples and the kept
checkpoint, and no checkpoint is written from the moment the loss looks elevated. A run that
starts fresh moves a previous run out of its folder first (``rundir.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..backbone.prompting import upsample_logits
from ..data import collate_samples
from ..peft import apply_peft, differing_keys, peft_config_of, save_adapter, summarize
from . import distributed as dist
from .checkpoint import (
    CHECKPOINT_NAME,
    atomic_save,
    find_resume,
    fingerprint,
    restore_rng,
    restore_training_state,
    training_state,
)
from .config import ConfigError, TrainConfig, load_config
from .evaluation import EvalResult, evaluate_model
from .guard import DivergenceError, DivergenceGuard, NonFiniteLossError, optimizer_tensors
from .losses import bce_dice_loss
from .rundir import check_output_dir, prepare_run_dir, write_run_marker
from .runtime import (
    EmbeddingCache,
    Indexed,
    PromptedSam,
    autocast,
    batch_prompts,
    build_datasets,
    build_model,
    build_val_set,
    check_dataset,
    enable_activation_checkpointing,
    encoder_trains,
    precision,
    seed_everything,
)
from .schedule import lr_factor
from .validation import METRIC_KEYS, ModelSelection, ValidationSummary, Validator

__all__ = [
    "DivergenceError",
    "NonFiniteLossError",
    "Trainer",
    "run_experiment",
    "build_model",
    "build_datasets",
]


def _adam(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Adam:
    """Adam (Sec. 5.1); the fused kernel where torch has one (3-4x faster step on the CPU)."""
    kwargs = {"lr": cfg.lr, "betas": cfg.optim.betas, "weight_decay": cfg.weight_decay}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, **kwargs)


class Trainer:
    """Fine-tunes ``sam`` (built from ``config`` when not given) on ``train_set``.

    Everything that can fail is checked in the constructor, before any training: the config, the
    resume checkpoint's configuration, the datasets, the batch size against the world size.
    ``callbacks`` receive every logged record (dict) on rank 0, e.g. for live plots.
    ``val_set`` selects the kept adapter (``validation.py``); when the datasets are built from
    the config it is ``data.val_split``'s, when they are given it must be given too (None: no
    validation, said in the run's last line).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        sam: Sam | None = None,
        train_set: Any = None,
        eval_set: Any = None,
        val_set: Any = None,
        callbacks: Sequence[Callable[[dict], None]] = (),
    ):
        self.config = cfg = config.validate()
        self.fingerprint = fingerprint(cfg)
        self.env = dist.init_distributed(cfg.runtime.device)
        self.run_dir = cfg.run_dir
        check_output_dir(self.run_dir)
        self.callbacks = list(callbacks)
        self.resume = find_resume(cfg, self.env.world_size)
        self.guard = DivergenceGuard(cfg.runtime.divergence_factor, cfg.runtime.divergence_window)
        if train_set is None and eval_set is None:
            needs_training = cfg.epochs > 0 and cfg.peft.method != "freeze"
            train_set, eval_set = build_datasets(cfg, need_train=needs_training)
            if val_set is None and needs_training:
                val_set = build_val_set(cfg)
        check_dataset(train_set, "training")
        check_dataset(eval_set, "evaluation")
        check_dataset(val_set, "validation")
        self.train_set, self.eval_set, self.val_set = train_set, eval_set, val_set
        if cfg.optim.batch_size % self.env.world_size:
            raise ConfigError(
                f"optim.batch_size={cfg.optim.batch_size} (the global batch) must be a multiple "
                f"of the {self.env.world_size} processes"
            )
        self.local_batch = cfg.optim.batch_size // self.env.world_size
        if sam is None:
            sam, _ = build_model(cfg)
        elif peft_config_of(sam) is None:
            seed_everything(cfg.runtime.seed)
            apply_peft(sam, cfg.peft)
        elif peft_config_of(sam) != cfg.peft:
            names = ("sam", "config")
            diff = differing_keys(peft_config_of(sam), cfg.peft, names)
            raise ConfigError(f"sam has another PEFT variant than the config asks for ({diff})")
        self.sam = sam.to(self.env.device)
        self.summary = summarize(sam)
        if cfg.runtime.activation_checkpointing:
            enable_activation_checkpointing(sam)
        self.params = [p for p in sam.parameters() if p.requires_grad]
        self.trains = bool(self.params) and cfg.epochs > 0 and train_set is not None
        cache = str(cfg.runtime.cache_embeddings).lower()
        if cache == "true" and encoder_trains(sam):
            raise ConfigError("runtime.cache_embeddings=true, but the image encoder trains")
        caching = cache != "false" and not encoder_trains(sam)
        # one cache per dataset: the key is the index within that dataset
        self.cache = EmbeddingCache() if caching else None
        self.eval_cache = EmbeddingCache() if caching else None
        self.val_cache = EmbeddingCache() if caching else None
        self.model = PromptedSam(sam)
        self.forward = self.model
        if self.trains and dist.is_distributed():
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            self.forward = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True
            )
        self.dtype, use_scaler = precision(cfg.runtime.amp, self.env.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.optimizer = _adam(self.params, cfg) if self.params else None
        per_epoch = -(-len(train_set) // cfg.optim.batch_size) if self.trains else 1
        self.decay_steps = cfg.optim.decay_steps or max(1, cfg.epochs * per_epoch)
        self.history: list[dict] = []
        self.position = (0, 0, 0)  # epoch, step in epoch, global step
        self.selection: ModelSelection | None = None
        if self.trains and val_set is not None:
            v = cfg.validation
            rules = Validator(METRIC_KEYS[cfg.metric], v.every_steps, v.patience, v.min_delta)
            self.selection = ModelSelection(rules, sam, self._score_validation, self.run_dir,
                                            self._log, self._save, self._write_adapter,
                                            self.env.device)  # fmt: skip
        self.validation: ValidationSummary | None = None  # set when fit() ends

    def _save(self, epoch: int, step: int, global_step: int, final: bool = False) -> bool:
        """Checkpoint unless the guard holds it back (an elevated loss pending; not at the
        run's end) or the weights are not finite (raises); returns whether it was written."""
        if not (final or self.guard.may_save()):
            return False
        named = [(n, p) for n, p in self.sam.named_parameters() if p.requires_grad]
        self.guard.check_finite(named + optimizer_tensors(self.optimizer), global_step)
        if dist.is_main():
            position, world = (epoch, step, global_step), self.env.world_size
            state = training_state(self.sam, self.optimizer, self.scaler, position, world,
                                   self.config, self.history, self.guard.state_dict())  # fmt: skip
            atomic_save(state, self.run_dir / CHECKPOINT_NAME)
        self.guard.saved(self.run_dir / CHECKPOINT_NAME, global_step)
        return True

    def _write_adapter(self, directory: Path) -> None:
        """The adapter and the run's record beside it (``evaluate`` checks the record)."""
        if dist.is_main():
            save_adapter(self.sam, directory)
            write_run_marker(directory, self.config.to_dict(), self.fingerprint)

    # ---- logging ------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        self.history.append(record)
        if dist.is_main():
            with open(self.run_dir / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            for callback in self.callbacks:
                callback(record)

    # ---- training -----------------------------------------------------------------------
    def _epoch_indices(self, epoch: int) -> list[int]:
        sampler = DistributedSampler(
            range(len(self.train_set)),
            num_replicas=self.env.world_size,
            rank=self.env.rank,
            shuffle=True,
            seed=self.config.runtime.seed,
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def _step(self, batch: dict, epoch: int, step: int, global_step: int) -> float:
        dev, size = self.env.device, self.sam.image_encoder.img_size
        masks = [torch.as_tensor(m).to(dev, torch.float32) for m in batch["masks"]]
        prompts = batch_prompts(batch, dev)
        images = batch["image"].to(dev)
        with autocast(dev, self.dtype):
            emb = (
                self.cache.get(self.model, images, batch["index"])
                if self.cache is not None
                else None
            )
            logits = self.forward(
                prompts, images=None if emb is not None else images, embeddings=emb
            )
        losses = [
            bce_dice_loss(upsample_logits(lg.float(), size)[:, 0], m)
            for lg, m in zip(logits, masks, strict=True)
            if len(m)
        ]
        loss = torch.stack(losses).mean() if losses else sum(lg.sum() for lg in logits) * 0.0
        value = float(loss.detach())
        total, count = dist.all_reduce_sum([value * len(masks), len(masks)]).tolist()
        self.guard.check_loss(
            total / count,
            global_step + 1,
            f"epoch {epoch + 1}, step {step + 1} (global step {global_step + 1})",
            lambda: [n for part in dist.all_gather_objects(batch["name"]) for n in part],
        )
        self.optimizer.zero_grad(set_to_none=True)
        rate = self.config.lr * lr_factor(self.config.optim.schedule, global_step, self.decay_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(total / count)

    def fit(self) -> list[dict]:
        """Train to ``optim.epochs`` (or ``runtime.max_steps``); returns the history records."""
        cfg = self.config
        own = self.resume is not None and (
            Path(self.resume["path"]).resolve().parent == self.run_dir.resolve()
        )
        if dist.is_main():  # a fresh start (not from this folder's checkpoint) never mixes runs
            aside = prepare_run_dir(self.run_dir, fresh=not own)
            if aside is not None:
                print(f"the previous run in {self.run_dir} was moved to {aside}")
            write_run_marker(self.run_dir, cfg.to_dict(), self.fingerprint)
        if self.resume is not None:
            restore_training_state(self.resume, self.sam, self.optimizer, self.scaler)
            self.history = list(self.resume["history"])
            r = self.resume
            self.position = (r["epoch"], r["step_in_epoch"], r["global_step"])
            self.guard.load_state_dict(r.get("guard", {}))
            self.guard.saved(r["path"], r["global_step"])
        if dist.is_main():
            with open(self.run_dir / "metrics.jsonl", "w") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in self.history)
        if not self.trains:
            return self.history
        epoch0, skip, global_step = self.position
        if self.resume is not None:
            restore_rng(self.resume["rng"])
        else:  # the run's randomness depends on the seed only, not on how the model was built
            seed_everything(cfg.runtime.seed)
        if self.selection is not None:
            self.selection.start(self.history, global_step)
        self.sam.train()
        max_steps, save_every = cfg.runtime.max_steps, cfg.runtime.save_every
        stopped = self.selection is not None and self.selection.stopped
        for epoch in range(epoch0, cfg.epochs):
            if stopped or (max_steps is not None and global_step >= max_steps):
                break
            indices = self._epoch_indices(epoch)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(epoch)
            n_steps = -(-len(indices) // self.local_batch)
            loader = DataLoader(
                Indexed(self.train_set, indices[skip * self.local_batch :]),
                batch_size=self.local_batch,
                collate_fn=collate_samples,
                num_workers=cfg.data.num_workers,
                generator=torch.Generator().manual_seed(cfg.runtime.seed * 1000 + epoch),
            )
            bar = tqdm(
                loader, total=n_steps, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not (cfg.runtime.progress and dist.is_main()), leave=False,
            )  # fmt: skip
            losses, start = [], time.perf_counter()
            for step, batch in enumerate(bar, start=skip):
                loss = self._step(batch, epoch, step, global_step)
                global_step += 1
                losses.append(loss)
                bar.set_postfix(loss=f"{loss:.4f}")
                if global_step % cfg.runtime.log_every == 0:
                    self._log({"event": "step", "epoch": epoch + 1, "step": step + 1,
                               "global_step": global_step, "loss": loss})  # fmt: skip
                stop = max_steps is not None and global_step >= max_steps
                mid_epoch = step + 1 < n_steps
                if mid_epoch and self.selection and self.selection.due(global_step, False):
                    stopped = self.selection.run(epoch + 1, global_step, (epoch, step + 1))
                periodic = save_every and global_step % save_every == 0
                if mid_epoch and (stop or stopped or periodic):
                    self._save(epoch, step + 1, global_step, final=stop or stopped)
                if (stop or stopped) and mid_epoch:
                    bar.close()
                    self.position = (epoch, step + 1, global_step)
                    self._finish_validation()
                    return self.history
            bar.close()
            skip = 0
            record = {"event": "epoch", "epoch": epoch + 1, "global_step": global_step,
                      "loss": float(np.mean(losses)) if losses else None,
                      "seconds": time.perf_counter() - start}  # fmt: skip
            if self.env.device.type == "cuda":
                record["peak_memory_gb"] = torch.cuda.max_memory_allocated(self.env.device) / 2**30
            self._log(record)
            if cfg.eval.every_epoch and self.eval_set is not None:
                self._log({"event": "eval", "epoch": epoch + 1, **self.evaluate().summary()})
                self.sam.train()
            last = epoch + 1 == cfg.epochs or (max_steps is not None and global_step >= max_steps)
            if self.selection and self.selection.due(global_step, True):
                stopped = self.selection.run(epoch + 1, global_step, (epoch + 1, 0))
            saved = self._save(epoch + 1, 0, global_step, final=last or stopped)
            if saved:  # the adapter always matches a kept checkpoint
                self._write_adapter(
                    self.run_dir / ("last_adapter" if self.selection else "adapter")
                )
            self.position = (epoch + 1, 0, global_step)
        self._finish_validation()
        return self.history

    def _score_validation(self) -> dict[str, Any]:
        """The validation split's scores of the current model (``ModelSelection``'s score)."""
        return evaluate_model(
            self.sam, self.val_set, device=self.env.device, amp=self.config.runtime.amp,
            progress=False, cache=self.val_cache,
        ).summary()  # fmt: skip

    def _finish_validation(self) -> None:
        if self.selection is not None:
            cfg = self.config
            self.selection.finish(self.position, cfg.data.val_split or "validation", cfg.lr,
                                  cfg.epochs)  # fmt: skip
            self.validation = self.selection.summary

    def evaluate(self, save_masks: bool = False) -> EvalResult:
        """Score the current model on the evaluation set (original image size)."""
        if self.eval_set is None:
            raise ConfigError("no evaluation set (eval.enabled is false or none was given)")
        return evaluate_model(
            self.sam,
            self.eval_set,
            device=self.env.device,
            amp=self.config.runtime.amp,
            save_masks=self.run_dir / "masks" if save_masks else None,
            progress=self.config.runtime.progress,
            cache=self.eval_cache,
        )


def run_experiment(
    config: TrainConfig | dict | str | Path,
    overrides: Sequence[str] = (),
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    """Train and evaluate one configuration; the notebooks' and the CLI's entry point.

    Returns {"metrics": {mdsc, miou, ...}, "per_instance": [...], "validation": {...} or
    None (``ValidationSummary.to_dict``), "history": [...], "config", "fingerprint", "run_dir",
    "trainable_parameters", "peft", "seconds"}; the same is written to RUN_DIR/results.json.
    With validation the test metrics are the kept (best-on-validation) model's.
    """
    start = time.perf_counter()
    cfg = load_config(config, list(overrides))
    trainer = Trainer(cfg, **trainer_kwargs)
    history = trainer.fit()
    result: dict[str, Any] = {"metrics": {}, "per_instance": []}
    if cfg.eval.enabled and trainer.eval_set is not None:
        evaluation = trainer.evaluate(save_masks=cfg.eval.save_masks)
        result = {"metrics": evaluation.summary(), "per_instance": evaluation.rows}
        trainer._log({"event": "eval", "epoch": trainer.position[0], **result["metrics"]})
    result.update(
        validation=trainer.validation.to_dict() if trainer.validation is not None else None,
    )
    result.update(
        history=history,
        config=cfg.to_dict(),
        fingerprint=trainer.fingerprint,
        run_dir=str(trainer.run_dir),
        trainable_parameters=trainer.summary.total,
        image_encoder_parameters=trainer.summary.image_encoder,
        peft=str(trainer.summary),
        seconds=time.perf_counter() - start,
    )
    if dist.is_main():
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        (trainer.run_dir / "results.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: train (and evaluate) one YAML config with dotted overrides."""
    parser = argparse.ArgumentParser(prog="python -m cobot_lib.train", description=main.__doc__)
    parser.add_argument("config", help="YAML config, e.g. configs/demo/tiny_nuclei_lora_cobot.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4")
    args = parser.parse_args(argv)

    def train() -> None:
        result = run_experiment(args.config, args.overrides)
        if dist.is_main():
            print(json.dumps(result["metrics"], indent=2))
            print(f"run directory: {result['run_dir']}")

    return dist.run_command(train, errors=(DivergenceError,))


if __name__ == "__main__":
    sys.exit(main())
