"""zoo.train: the one distributed trainer (single process, DDP, ZeRO-1, FSDP2; bf16/fp16; LoRA; exact resume)."""

from zoo.train.trainer import BatchPlan, NonFiniteError, TrainConfig, Trainer, lr_at, train

__all__ = ["BatchPlan", "NonFiniteError", "TrainConfig", "Trainer", "lr_at", "train"]
