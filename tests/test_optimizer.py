"""CpuAdamW: torch's AdamW bit for bit on CPU, torch's state_dict layout both ways, no torch._dynamo import."""
import subprocess
import sys

import pytest
import torch

from transrec.train.optimizer import CpuAdamW, adamw


def _model_and_groups(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.Embedding(7, 3))
    head, emb = list(net[:3].parameters()), list(net[3].parameters())
    return net, [{"params": head, "lr": 3e-3, "weight_decay": 0.01, "name": "model"},
                 {"params": emb, "lr": 1e-3, "weight_decay": 0.0, "name": "encoder_top"}]


def _steps(net, opt, n, start=0):
    """n steps with a changing lr; the embedding gets no gradient on odd steps (its state must not move)."""
    for i in range(start, start + n):
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn(4, 6, generator=g)
        loss = net[:3](x).pow(2).mean()
        if i % 2 == 0:
            loss = loss + net[3](torch.tensor([1, 2, 2])).sum()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = group["lr"] * 0.9
        opt.step()
        opt.zero_grad(set_to_none=True)


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_matches_torch_adamw_bit_for_bit():
    ours, ours_groups = _model_and_groups()
    ref, ref_groups = _model_and_groups()
    _steps(ours, CpuAdamW(ours_groups), 7)
    _steps(ref, torch.optim.AdamW(ref_groups, betas=(0.9, 0.999)), 7)
    assert _same(ours, ref)
    assert not _same(ours, _model_and_groups()[0])  # it did train


@pytest.mark.parametrize("first", ["ours", "torch"])
def test_state_dict_resumes_in_either(first):
    """3 steps in one optimizer, its state_dict into the other, 3 more steps == 6 steps in torch's."""
    make = {"ours": CpuAdamW, "torch": lambda g: torch.optim.AdamW(g, betas=(0.9, 0.999))}
    second = "torch" if first == "ours" else "ours"
    net, groups = _model_and_groups()
    opt = make[first](groups)
    _steps(net, opt, 3)
    saved = opt.state_dict()
    opt2 = make[second](groups)  # the same parameters, a fresh optimizer (lr comes from the state_dict)
    opt2.load_state_dict(saved)
    _steps(net, opt2, 3, start=3)
    ref, ref_groups = _model_and_groups()
    _steps(ref, make["torch"](ref_groups), 6)
    assert _same(net, ref)


def test_state_dict_of_another_model_is_refused():
    _, groups = _model_and_groups()
    small = CpuAdamW([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3}])
    with pytest.raises(ValueError, match="different number"):
        CpuAdamW(groups).load_state_dict(small.state_dict())


def test_cpu_training_step_imports_no_dynamo():
    probe = ("import sys, torch\n"
             "from transrec.train.optimizer import adamw\n"
             "m = torch.nn.Linear(3, 2)\n"
             "opt = adamw([{'params': list(m.parameters()), 'lr': 1e-3, 'weight_decay': 0.0}], torch.device('cpu'))\n"
             "m(torch.randn(4, 3)).sum().backward(); opt.step(); opt.zero_grad()\n"
             "print(type(opt).__name__, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["CpuAdamW", "False"]


def test_accelerators_get_torchs_adamw():
    p = torch.nn.Parameter(torch.zeros(2))
    assert isinstance(adamw([{"params": [p], "lr": 1e-3}], torch.device("cuda")), torch.optim.AdamW)
