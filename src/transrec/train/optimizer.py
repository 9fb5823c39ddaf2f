"""AdamW for the training loop: torch's on CUDA, a plain one of our own on CPU.

Why our own on CPU: every method of a `torch.optim.Optimizer` is wrapped in `torch._disable_dynamo`, so
building one imports torch._dynamo (with sympy): ~1 s of every training process here, where a tiny run's
whole work is a few seconds and a study runs one process per run. On CPU torch runs AdamW one tensor at
a time (`_single_tensor_adam`; foreach and fused are for accelerators), and `CpuAdamW.step` does the
same operations in the same order, so a run's numbers are bit for bit torch's (test). Its state_dict has
torch's layout, so a resume file written by either resumes in the other (a CPU run can resume on a GPU).
On CUDA torch's foreach implementation stays: one kernel per operation over all tensors, and there a
one-off import is nothing next to the run.
"""
from __future__ import annotations

import torch


def adamw(param_groups: list[dict], device: torch.device, betas=(0.9, 0.999), eps: float = 1e-8):
    """AdamW with decoupled weight decay over `param_groups` (each with lr and weight_decay)."""
    if device.type == "cpu":
        return CpuAdamW(param_groups, betas=betas, eps=eps)
    return torch.optim.AdamW(param_groups, betas=betas, eps=eps)


class CpuAdamW:
    """The subset of torch.optim.AdamW the loop uses: param_groups (lr set per step), step, zero_grad,
    state_dict, load_state_dict. No amsgrad, maximize or capturable."""

    def __init__(self, param_groups: list[dict], betas=(0.9, 0.999), eps: float = 1e-8):
        defaults = {"betas": tuple(betas), "eps": eps, "weight_decay": 1e-2}
        self.param_groups = [{**defaults, **group, "params": list(group["params"])} for group in param_groups]
        self.state: dict[torch.Tensor, dict] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:  # as torch: a parameter without a gradient keeps its state and its step
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": torch.tensor(0.0),  # float32 on CPU, like torch's
                                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                if wd != 0:
                    p.mul_(1 - lr * wd)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state["step"].item()
                step_size = lr / (1 - beta1 ** step)
                denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        """torch's layout: parameters numbered in group order, state keyed by those numbers."""
        index, groups, start = {}, [], 0
        for group in self.param_groups:
            ids = list(range(start, start + len(group["params"])))
            index.update({id(p): i for p, i in zip(group["params"], ids)})
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
            start += len(ids)
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(len(s["params"]) != len(g["params"])
                                                       for s, g in zip(saved, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups or parameters")
        self.state = {}
        for group, saved_group in zip(self.param_groups, saved):
            group.update({k: v for k, v in saved_group.items() if k != "params"})
            for p, i in zip(group["params"], saved_group["params"]):
                if i in state_dict["state"]:
                    s = state_dict["state"][i]
                    self.state[p] = {"step": s["step"].detach().to("cpu", torch.float32).clone(),
                                     "exp_avg": s["exp_avg"].detach().to(p.device, p.dtype).clone(),
                                     "exp_avg_sq": s["exp_avg_sq"].detach().to(p.device, p.dtype).clone()}
