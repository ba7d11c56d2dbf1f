"""The language models, from Hugging Face `transformers` with their default configs and random
initialisation (no pretrained weights, nothing fetched): BERT-base and GPT-2 small."""
from __future__ import annotations

import os

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")        # we build from configs only; never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Bert(nn.Module):
    """BertModel(BertConfig()) with (input_ids, attention_mask) -> (last_hidden_state, pooler_output)."""

    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertModel
        config = BertConfig(attn_implementation="eager")
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=True)

    def forward(self, input_ids, attention_mask):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return out.last_hidden_state, out.pooler_output


class GPT2(nn.Module):
    """GPT2LMHeadModel(GPT2Config()) with input_ids -> logits (no KV cache)."""

    def __init__(self):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel
        config = GPT2Config(attn_implementation="eager")
        self.config = config
        self.gpt2 = GPT2LMHeadModel(config)

    def forward(self, input_ids):
        # An explicit all-ones mask: with none, transformers >= 5 probes position_ids for packed
        # sequences (torch.diff, which the ONNX exporter lacks); with it, plain causal attention.
        mask = torch.ones_like(input_ids)
        return self.gpt2(input_ids=input_ids, attention_mask=mask, use_cache=False,
                         return_dict=True).logits


def _seeded(cls, seed: int) -> nn.Module:
    """`cls()` under `seed`, with its zero biases and unit LayerNorm gains made random too: as in a
    trained model, so that a compiler that drops a bias or a gain cannot still match, and no two
    weights are equal (the exporter would share equal initializers through Identity nodes)."""
    torch.manual_seed(seed)
    model = cls()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.normal_(0.0, 0.02, generator=gen)
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, torch.Tensor) \
                    and m.bias.ndim == 1 and m.bias.requires_grad:
                m.bias.normal_(0.0, 0.02, generator=gen)       # Linear and GPT-2's Conv1D
    return model.eval()


def bert(seed: int) -> nn.Module:
    return _seeded(Bert, seed)


def gpt2(seed: int) -> nn.Module:
    return _seeded(GPT2, seed)
