"""optforge optimizers in Hugging Face ``Trainer`` and Lightning (docs/INTEGRATIONS.md).

Tiny models built from configs (nothing downloaded) on a generated task: a
sequence's label is whether its first token is in the upper half of the
vocabulary. ``tests/test_integrations.py`` trains through both, and checks that a
run stopped at a checkpoint and resumed ends on the weights of a run that was
never stopped.
"""

from __future__ import annotations

import torch

import optforge

VOCAB, LENGTH = 32, 8


def sequences(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    return ids, (ids[:, 0] >= VOCAB // 2).long()


# ------------------------------------------------------------------ Hugging Face


class Dataset(torch.utils.data.Dataset):
    def __init__(self, n: int = 256, seed: int = 0):
        self.ids, self.labels = sequences(n, seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hf_model(seed: int = 0):
    """A two-layer BERT classifier of about 20k parameters, from its config."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=LENGTH, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def hf_trainer(model, out_dir: str, max_steps: int = 60, save_steps: int = 30,
               factory: bool = False):
    """A ``Trainer`` running optforge's Lion, with decay off for biases, norms, embeddings:
    the optimizer built here, or (``factory``) by the Trainer through ``OptimizerFactory``."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=out_dir, max_steps=max_steps, save_steps=save_steps,
                             per_device_train_batch_size=16, learning_rate=3e-3,
                             lr_scheduler_type="linear", warmup_steps=4, logging_steps=5,
                             report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    if factory:  # the Trainer calls OptimizerFactory()(model, **kwargs) itself
        kwargs = {"name_or_program": "lion", "lr": 3e-3, "weight_decay": 0.1}
        return Trainer(model=model, args=args, train_dataset=Dataset(),
                       optimizer_cls_and_kwargs=(optforge.optim.OptimizerFactory, kwargs))
    optimizer = optforge.create_optimizer(model, "lion", lr=3e-3, weight_decay=0.1)
    # (optimizer, None): the Trainer builds its scheduler (linear, warmup) on our optimizer
    return Trainer(model=model, args=args, train_dataset=Dataset(),
                   optimizers=(optimizer, None))


# ------------------------------------------------------------------ Lightning


def lightning_module(seed: int = 0):
    import pytorch_lightning as pl

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.embed = torch.nn.Embedding(VOCAB, 16)
            self.norm = torch.nn.LayerNorm(16)
            self.head = torch.nn.Linear(16, 2)

        def forward(self, ids):  # the label depends on the first token only
            return self.head(self.norm(self.embed(ids[:, 0])))

        def training_step(self, batch, _):
            ids, labels = batch
            loss = torch.nn.functional.cross_entropy(self(ids), labels)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            optimizer = optforge.create_optimizer(self, "adamw", lr=5e-2, weight_decay=0.01)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=40)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    return Classifier()


def lightning_data(batch: int = 64):
    ids, labels = sequences(1024)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, labels),
                                       batch_size=batch, shuffle=False)
