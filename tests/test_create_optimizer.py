"""``optforge.create_optimizer`` and ``optforge.zoo.names(pattern)``.

The groups are checked against hand-listed parameter names, and the trained
weights against torch.optim.AdamW / pytorch-optimizer's Lion given the same
groups built by hand.
"""

from __future__ import annotations

import pytest
import torch
from pytorch_optimizer import Lion

import optforge
from optforge import zoo


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.fc = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.bn = torch.nn.BatchNorm1d(8)
        self.head = torch.nn.Linear(8, 3, bias=False)
        self.scale = torch.nn.Parameter(torch.ones(3))  # a bare parameter: decayed

    def forward(self, idx):
        return self.head(self.norm(torch.relu(self.fc(self.bn(self.embed(idx)))))) * self.scale


DECAYED = {"fc.weight", "head.weight", "scale"}
NOT_DECAYED = {"embed.weight", "fc.bias", "norm.weight", "norm.bias", "bn.weight", "bn.bias"}


def names_of(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def train(model, opt, steps=5):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, 10, (16,), generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(idx), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def by_hand(model, wd):
    named = dict(model.named_parameters())
    return [{"params": [named[n] for n in sorted(DECAYED)], "weight_decay": wd},
            {"params": [named[n] for n in sorted(NOT_DECAYED)], "weight_decay": 0.0}]


def test_lion_gets_a_zero_decay_group_for_biases_norms_and_embeddings():
    torch.manual_seed(0)
    model = Net()
    opt = optforge.create_optimizer(model, "lion", lr=1e-4, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert names_of(model, decayed["params"]) == DECAYED and decayed["wd"] == 0.1
    assert names_of(model, plain["params"]) == NOT_DECAYED and plain["wd"] == 0.0
    assert decayed["lr"] == plain["lr"] == 1e-4


@pytest.mark.parametrize("name, reference, kwargs", [
    ("adamw", torch.optim.AdamW, {}),
    ("lion", Lion, {"betas": (0.9, 0.99)}),
])
def test_training_matches_the_reference_with_the_same_groups(name, reference, kwargs):
    torch.manual_seed(0)
    ours, theirs = Net().double(), Net().double()
    theirs.load_state_dict(ours.state_dict())
    got = train(ours, optforge.create_optimizer(ours, name, lr=3e-3, weight_decay=0.5))
    want = train(theirs, reference(by_hand(theirs, 0.5), lr=3e-3, **kwargs))
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-9, atol=1e-12, msg=n)


def test_decay_defaults_to_the_programs_own():
    opt = optforge.create_optimizer(Net(), "adamw")
    assert [g["wd"] for g in opt.param_groups] == [zoo.load("adamw").hyperparameters["wd"], 0.0]


@pytest.mark.parametrize("no_decay, expected", [
    ((), DECAYED | NOT_DECAYED),
    (["*.bias"], DECAYED | {"embed.weight", "norm.weight", "bn.weight"}),
    (["LayerNorm", "fc.*"], DECAYED - {"fc.weight"} | {"embed.weight", "bn.weight", "bn.bias"}),
    (lambda name, p, module: p.dim() <= 1, {"fc.weight", "head.weight", "embed.weight"}),
])
def test_the_rule_can_be_overridden(no_decay, expected):
    model = Net()
    opt = optforge.create_optimizer(model, "adamw", weight_decay=0.1, no_decay=no_decay)
    assert names_of(model, opt.param_groups[0]["params"]) == expected
    assert opt.param_groups[0]["wd"] == 0.1


def test_timm_no_weight_decay_hook_frozen_and_named_parameters():
    model = Net()
    model.no_weight_decay = lambda: {"head.weight"}
    model.fc.weight.requires_grad_(False)
    opt = optforge.create_optimizer(model, "adamw", weight_decay=0.1)
    assert names_of(model, opt.param_groups[0]["params"]) == {"scale"}
    pairs = optforge.create_optimizer(Net().named_parameters(), "adamw", weight_decay=0.1)
    # by name alone: only the biases are recognised
    assert len(pairs.param_groups[1]["params"]) == 3


def test_plain_parameters_program_text_and_files(tmp_path):
    model = Net()
    opt = optforge.create_optimizer(model.parameters(), "sgd", lr=0.1, weight_decay=0.01)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["wd"] == 0.01
    path = tmp_path / "rule.py"
    path.write_text("def rule(w, g, lr, wd=0.0):\n    return lr * (g + wd * w)\n")
    for spec in (path, str(path), path.read_text(), optforge.Program.parse(path.read_text())):
        opt = optforge.create_optimizer(model, spec, weight_decay=0.2)
        assert [g["wd"] for g in opt.param_groups] == [0.2, 0.0]


@pytest.mark.parametrize("spec, kwargs, match", [
    ("def r(w, g, lr, beta=0.9):\n    return lr * g\n", {"weight_decay": 0.1},
     "no weight-decay hyperparameter"),
    ("lion", {"weight_decay": 0.1, "wd": 0.2}, "give weight decay once"),
    ("lion", {"gamma": 0.1}, "unknown hyperparameter"),
    ("no_such_rule", {}, "no zoo optimizer"),
    ("missing/rule.py", {}, "does not exist"),
])
def test_bad_input_is_a_precise_error(spec, kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        optforge.create_optimizer(Net(), spec, **kwargs)


def test_second_order_zoo_programs_get_their_options():
    opt = optforge.create_optimizer(Net(), "sophiah", lr=1e-3, weight_decay=0.1)
    assert opt.hessian_distribution == zoo.entry("sophiah").hessian["distribution"]


def test_zoo_names_glob():
    adams = zoo.names("adam*")
    assert {"adam", "adamw", "adamod"} <= set(adams)
    assert all(n.startswith("adam") for n in adams) and "nadam" not in adams
    assert zoo.names("ADAM*") == adams
    assert zoo.names("*lion") == ["cautious_lion", "lion"]
    assert zoo.names("nothing*") == [] and zoo.names() == sorted(zoo.names("*"))


def test_zoo_list_takes_a_pattern():
    from typer.testing import CliRunner

    from optforge.cli import app

    res = CliRunner().invoke(app, ["zoo", "list", "*lion"])
    assert res.exit_code == 0, res.output
    assert "cautious_lion" in res.output and "adamw" not in res.output
