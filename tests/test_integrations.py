"""optforge optimizers through the real Hugging Face ``Trainer`` and Lightning.

The examples of docs/INTEGRATIONS.md (``docs/examples/integrations.py``) train
tiny models built from configs (nothing is downloaded). Each framework saves a
checkpoint half-way (the optimizer's state included); training resumed from it
with a fresh model and a fresh optimizer must end on the weights of the run
that was never stopped, which it cannot if the optimizer's state is lost.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

import optforge

os.environ.setdefault("HF_HUB_OFFLINE", "1")
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples" / "integrations.py"
_spec = importlib.util.spec_from_file_location("optforge_integrations_example", EXAMPLES)
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


def weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0, msg=lambda m, n=n: f"{n}: {m}")


def test_hugging_face_trainer_trains_and_resumes(tmp_path):
    pytest.importorskip("transformers")
    full = ex.hf_trainer(ex.hf_model(), str(tmp_path / "full"))
    assert isinstance(full.optimizer, optforge.ProgramOptimizer)
    full.train()
    losses = [r["loss"] for r in full.state.log_history if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]  # it learned the task
    groups = full.optimizer.param_groups
    assert [g["wd"] for g in groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in groups[0]["params"])  # biases, norms, embeddings excluded
    checkpoint = tmp_path / "full" / "checkpoint-30"
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    assert state["state"] and all("m" in s for s in state["state"].values())

    resumed = ex.hf_trainer(ex.hf_model(seed=1), str(tmp_path / "resumed"))
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert_same(weights(resumed.model), weights(full.model))


def test_hugging_face_optimizer_factory_is_create_optimizer(tmp_path):
    """``optimizer_cls_and_kwargs=(OptimizerFactory, ...)`` trains as ``optimizers=(opt, None)``."""
    trainer_optimizer = pytest.importorskip("transformers.trainer_optimizer")
    if not hasattr(trainer_optimizer, "is_optimizer_factory"):
        pytest.skip("this transformers calls no optimizer factories")
    runs = []
    for factory in (False, True):
        t = ex.hf_trainer(ex.hf_model(), str(tmp_path / str(factory)), max_steps=10,
                          save_steps=100, factory=factory)
        t.train()
        opt = getattr(t.optimizer, "optimizer", t.optimizer)  # accelerate's wrapper
        assert isinstance(opt, optforge.ProgramOptimizer)
        assert [g["wd"] for g in opt.param_groups] == [0.1, 0.0]
        runs.append(weights(t.model))
    assert_same(*runs)


def test_lightning_configure_optimizers_trains_and_resumes(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import ModelCheckpoint

    def trainer(*callbacks):
        return pl.Trainer(max_steps=32, accelerator="cpu", devices=1, logger=False,
                          callbacks=list(callbacks), enable_checkpointing=bool(callbacks),
                          enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=tmp_path)

    full = ex.lightning_module()
    # an epoch is 16 steps; Lightning resumes exactly from an epoch's end (mid-epoch, a plain
    # DataLoader restarts its epoch)
    t = trainer(ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=16,
                                save_top_k=-1))
    t.fit(full, ex.lightning_data())
    assert isinstance(t.optimizers[0], optforge.ProgramOptimizer)
    ids, labels = ex.sequences(512, seed=7)
    with torch.no_grad():
        accuracy = (full(ids).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9  # it learned the task (chance is 0.5)

    checkpoint = tmp_path / "step=16.ckpt"
    assert torch.load(checkpoint, weights_only=False)["optimizer_states"][0]["state"]
    resumed = ex.lightning_module(seed=1)
    trainer().fit(resumed, ex.lightning_data(), ckpt_path=checkpoint)
    assert_same(weights(resumed), weights(full))
