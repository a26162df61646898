#!/usr/bin/python3
"""Generates the end-to-end reference data under tests/data/e2e/ from PyTorch.

Each case is a small deterministic PyTorch model exported to ONNX (do_constant_folding=False,
so the exporter's Shape/Gather/Range chains reach ptc's importer) at opset 14 and 17, with its
inputs and the outputs PyTorch computed, stored in the ONNX backend test-data convention:

  tests/data/e2e/<name>_opset<N>/
    model.onnx
    input_0.pb, input_1.pb, ...     onnx.TensorProto, name = the graph input name
    output_0.pb, ...                onnx.TensorProto, name = the graph output name (torch values)
    meta.json                       dims to bind (--dim), input/output names, tolerances
    grads/<param>.pb                (gpt_loss only) d loss / d param from torch autograd
  meta.json of gpt_loss also lists the losses of a few AdamW steps (llm.c test_gpt2 style).

The references are PyTorch's numbers, independent of ptc. When onnxruntime is installed it is
used as a sanity check that the exported ONNX file reproduces them.

Regenerate (Debian's torch 1.13 + onnx 1.12 live in /usr/bin/python3; the hf_* cases also
need transformers 4.31.0, the last release that runs on torch 1.13:
/usr/bin/python3 -m pip install --user --break-system-packages transformers==4.31.0):
  /usr/bin/python3 tests/e2e/make_references.py [--out tests/data/e2e]

With torch 2.9 or later the script writes the *_dynamo_* cases instead: the same models
exported by torch.onnx's dynamo exporter (the default since torch 2.9, opset 18 and later), the
hf_* ones with transformers 5.25.0 (in a virtual environment:
python3 -m venv /opt/t211 && /opt/t211/bin/pip install torch==2.11.0 onnx onnxscript
onnxruntime transformers==5.25.0, then /opt/t211/bin/python tests/e2e/make_references.py).
Inference cases are exported as the exporter's defaults write them (optimize=True: its
optimizer folds weight transposes into new initializers); training cases with optimize=False,
which keeps every parameter an initializer under its own name (and tied weights tied), and
hf_gpt2_loss (opset 20) and hf_llama_loss (opset 23) also with optimize=True (nn.Linear's
weights and the tied LM head folded into transposed copies).
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

OPSETS = (14, 17)
DYNAMO = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 9)
DYNAMO_OPSETS = (20,)  # torch 2.9+'s default; the hf_* cases also at 23 (Attention)
HF_DYNAMO_VERSION = "5.25.0"
if DYNAMO:
    import warnings
    # dynamic_axes still names the dims (torch converts it to dynamic_shapes).
    warnings.filterwarnings("ignore", message=".*dynamic_axes.*")
RTOL = 1e-4
ATOL = 1e-5


# ----------------------------------------------------------------------------------------------
# Models


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, n_head, block_size):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.register_buffer(
            "bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        hs = c // self.n_head
        q = q.view(b, t, self.n_head, hs).transpose(1, 2)  # [B, H, T, hs]
        k = k.view(b, t, self.n_head, hs).transpose(1, 2)
        v = v.view(b, t, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # [B, H, T, T]
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v  # [B, H, T, hs]
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, dim, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_head, block_size)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    """GPT-2 style decoder (nanoGPT layout) with a weight-tied LM head."""

    def __init__(self, vocab, n_layer, dim, n_head, block_size):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block_size, dim)
        self.h = nn.ModuleList([Block(dim, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def logits(self, idx):
        _, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device).unsqueeze(0)  # [1, T]
        x = self.wte(idx) + self.wpe(pos)  # [B, T, C]
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # [B, T, V]

    def forward(self, idx):
        return self.logits(idx)


class GptLoss(nn.Module):
    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, idx, targets):
        logits = self.gpt.logits(idx)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class Seq2Seq(nn.Module):
    """torch.nn.Transformer encoder-decoder with learned position embeddings."""

    def __init__(self, src_vocab, tgt_vocab, dim, n_head, max_len, dropout=0.0):
        super().__init__()
        self.src_emb = nn.Embedding(src_vocab, dim)
        self.tgt_emb = nn.Embedding(tgt_vocab, dim)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.transformer = nn.Transformer(
            d_model=dim, nhead=n_head, num_encoder_layers=2, num_decoder_layers=2,
            dim_feedforward=64, dropout=dropout, batch_first=True)
        self.out = nn.Linear(dim, tgt_vocab)

    def forward(self, src, tgt):
        s = src.size(1)
        t = tgt.size(1)
        src_pos = torch.arange(0, s, dtype=torch.long, device=src.device).unsqueeze(0)
        tgt_pos = torch.arange(0, t, dtype=torch.long, device=tgt.device).unsqueeze(0)
        x = self.src_emb(src) + self.pos_emb(src_pos)  # [B, S, C]
        y = self.tgt_emb(tgt) + self.pos_emb(tgt_pos)  # [B, T, C]
        # Causal mask: 0 on and below the diagonal, -inf above.
        tgt_mask = torch.triu(torch.full((t, t), float("-inf"), device=tgt.device), diagonal=1)
        h = self.transformer(x, y, tgt_mask=tgt_mask)  # [B, T, C]
        return self.out(h)  # [B, T, V]


def perturb_norms(model, gen):
    """LayerNorm defaults (gamma 1, beta 0) would hide scale/bias bugs: randomize them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, LlamaRmsNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))


class LlamaRmsNorm(nn.Module):
    """transformers' LlamaRMSNorm, op for op."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(
        batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class LlamaAttention(nn.Module):
    """transformers' LlamaAttention (eager): rotary on q and k, repeat_kv for grouped-query
    attention, an additive float causal mask, softmax in float32."""

    def __init__(self, dim, n_head, n_kv_head):
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = dim // n_head
        self.q_proj = nn.Linear(dim, n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_head * self.head_dim, dim, bias=False)

    def forward(self, hidden_states, cos, sin, causal_mask):
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, -1, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        k = repeat_kv(k, self.n_head // self.n_kv_head)
        v = repeat_kv(v, self.n_head // self.n_kv_head)
        attn_weights = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        attn_weights = attn_weights + causal_mask[:, :, :, : k.shape[-2]]
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(q.dtype)
        attn_output = torch.matmul(attn_weights, v)
        attn_output = attn_output.transpose(1, 2).contiguous().reshape(bsz, q_len, -1)
        return self.o_proj(attn_output)


class LlamaMlp(nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.gate_proj = nn.Linear(dim, ffn, bias=False)
        self.up_proj = nn.Linear(dim, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, dim, n_head, n_kv_head, ffn, eps):
        super().__init__()
        self.self_attn = LlamaAttention(dim, n_head, n_kv_head)
        self.mlp = LlamaMlp(dim, ffn)
        self.input_layernorm = LlamaRmsNorm(dim, eps)
        self.post_attention_layernorm = LlamaRmsNorm(dim, eps)

    def forward(self, x, cos, sin, causal_mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, causal_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """transformers' LlamaForCausalLM written out (its modeling_llama.py, eager attention): the
    rotary tables are computed in the forward from the inv_freq buffer and the positions, the
    causal mask is built from triu(full(min)) as _update_causal_mask does, untied LM head."""

    def __init__(self, vocab, n_layer, dim, n_head, n_kv_head, ffn, eps=1e-6, theta=10000.0):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(
            [LlamaLayer(dim, n_head, n_kv_head, ffn, eps) for _ in range(n_layer)])
        self.norm = LlamaRmsNorm(dim, eps)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        head_dim = dim // n_head
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float()
                                    / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotary(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(
            position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def logits(self, input_ids):
        bsz, seq = input_ids.shape
        x = self.embed_tokens(input_ids)
        cache_position = torch.arange(0, seq, device=input_ids.device)
        position_ids = cache_position.unsqueeze(0)
        min_dtype = torch.finfo(x.dtype).min
        causal_mask = torch.full((seq, seq), fill_value=min_dtype, dtype=x.dtype)
        causal_mask = torch.triu(causal_mask, diagonal=1)
        causal_mask = causal_mask * (torch.arange(seq) > cache_position.reshape(-1, 1))
        causal_mask = causal_mask[None, None, :, :].expand(bsz, 1, -1, -1)
        cos, sin = self.rotary(x, position_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, causal_mask)
        return self.lm_head(self.norm(x))

    def forward(self, input_ids):
        return self.logits(input_ids)


class LlamaLoss(nn.Module):
    """Cross-entropy of every position, or (shifted) LlamaForCausalLM's own loss: position t
    predicts label t + 1 (labels = input_ids)."""

    def __init__(self, llama, shifted=False):
        super().__init__()
        self.llama = llama
        self.shifted = shifted

    def forward(self, input_ids, labels):
        logits = self.llama.logits(input_ids)
        if self.shifted:
            logits = logits[..., :-1, :].contiguous()
            labels = labels[..., 1:].contiguous()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))


# ----------------------------------------------------------------------------------------------
# Cases


GPT_CFG = dict(vocab=97, n_layer=2, dim=32, n_head=4, block_size=32)
GPT_BATCH, GPT_SEQ = 2, 16


def make_gpt(seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = Gpt(**GPT_CFG)
    # nn.Embedding's N(0, 1) tied to the LM head gives logits ~ N(0, 32) and a loss of ~20;
    # std 0.3 keeps the logits ~ N(0, 3): a softmax that is neither flat nor one-hot.
    with torch.no_grad():
        model.wte.weight.normal_(0.0, 0.3, generator=gen)
        model.wpe.weight.normal_(0.0, 0.3, generator=gen)
    perturb_norms(model, gen)
    return model.eval()


def case_gpt():
    model = make_gpt(1234)
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, GPT_CFG["vocab"], (GPT_BATCH, GPT_SEQ), generator=gen)
    return dict(
        name="gpt",
        description="GPT-2 style decoder: vocab 97, 2 layers, dim 32, 4 heads, block 32, "
                    "hand-written causal attention, exact GELU, tied LM head",
        model=model,
        inputs=[("idx", idx)],
        output_names=["logits"],
        dynamic_axes={"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        dims={"batch": GPT_BATCH, "seq": GPT_SEQ},
    )


def case_gpt_loss():
    model = GptLoss(make_gpt(1234)).eval()
    gen = torch.Generator().manual_seed(2)
    idx = torch.randint(0, GPT_CFG["vocab"], (GPT_BATCH, GPT_SEQ), generator=gen)
    targets = torch.randint(0, GPT_CFG["vocab"], (GPT_BATCH, GPT_SEQ), generator=gen)
    return dict(
        name="gpt_loss",
        description="the gpt case with its loss: F.cross_entropy(logits.view(-1, V), "
                    "targets.view(-1)) (SoftmaxCrossEntropyLoss); grads/ holds d loss / d param",
        model=model,
        inputs=[("idx", idx), ("targets", targets)],
        output_names=["loss"],
        dynamic_axes={"idx": {0: "batch", 1: "seq"}, "targets": {0: "batch", 1: "seq"}},
        dims={"batch": GPT_BATCH, "seq": GPT_SEQ},
        training=True,
        make_fresh=lambda: GptLoss(make_gpt(1234)),
    )


LLAMA_CFG = dict(vocab=101, n_layer=2, dim=32, n_head=4, n_kv_head=2, ffn=88)
LLAMA_BATCH, LLAMA_SEQ = 2, 16


def make_llama(seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = Llama(**LLAMA_CFG)
    with torch.no_grad():  # as make_gpt: logits ~ N(0, a few), not N(0, 32)
        model.embed_tokens.weight.normal_(0.0, 0.3, generator=gen)
    perturb_norms(model, gen)
    return model.eval()


LLAMA_DESCRIPTION = ("Llama decoder written as transformers' modeling_llama.py (eager): vocab "
                     "101, 2 layers, dim 32, 4 heads, 2 kv heads (repeat_kv), RMSNorm, rotary "
                     "tables computed in the forward, SwiGLU MLP (ffn 88), additive causal mask "
                     "from triu(full(min)), untied LM head")


def case_llama():
    model = make_llama(777)
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, LLAMA_CFG["vocab"], (LLAMA_BATCH, LLAMA_SEQ), generator=gen)
    return dict(
        name="llama",
        description=LLAMA_DESCRIPTION,
        model=model,
        inputs=[("input_ids", ids)],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        dims={"batch": LLAMA_BATCH, "seq": LLAMA_SEQ},
    )


def case_llama_loss():
    make = lambda: LlamaLoss(make_llama(777))
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, LLAMA_CFG["vocab"], (LLAMA_BATCH, LLAMA_SEQ), generator=gen)
    labels = torch.randint(0, LLAMA_CFG["vocab"], (LLAMA_BATCH, LLAMA_SEQ), generator=gen)
    return dict(
        name="llama_loss",
        description="the llama case with its loss: F.cross_entropy(logits.view(-1, V), "
                    "labels.view(-1)); grads/ holds d loss / d param",
        model=make().eval(),
        make_fresh=make,
        inputs=[("input_ids", ids), ("labels", labels)],
        output_names=["loss"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "labels": {0: "batch", 1: "seq"}},
        dims={"batch": LLAMA_BATCH, "seq": LLAMA_SEQ},
        training=True,
    )


def case_llama_shifted_loss():
    make = lambda: LlamaLoss(make_llama(777), shifted=True)
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, LLAMA_CFG["vocab"], (LLAMA_BATCH, LLAMA_SEQ), generator=gen)
    return dict(
        name="llama_shifted_loss",
        description="the llama case with LlamaForCausalLM's shifted loss: "
                    "F.cross_entropy(logits[..., :-1, :], labels[..., 1:]), labels = input_ids; "
                    "grads/ holds d loss / d param",
        model=make().eval(),
        make_fresh=make,
        inputs=[("input_ids", ids), ("labels", ids.clone())],
        output_names=["loss"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "labels": {0: "batch", 1: "seq"}},
        dims={"batch": LLAMA_BATCH, "seq": LLAMA_SEQ},
        training=True,
        opsets=(17,),
    )


# transformers' own models (its modeling code, not a transcription), when the package is there:
# GPT2LMHeadModel (Conv1D layers exported as Gemm on flattened activations, a bool causal
# buffer filled with finfo(f32).min, the tanh GELU, tied LM head) and LlamaForCausalLM (the
# If nodes torch.onnx writes for squeeze of a dynamic dim, rotary caches), each with its own
# shifted causal-LM loss (labels = input_ids). Random weights from a fixed seed; the norms and
# biases perturbed (their 1 / 0 defaults would hide bugs, and torch.onnx would merge the equal
# zero biases into one initializer).
HF_VERSION = "4.31.0"


def hf_loss_wrapper(model):
    class CausalLmLoss(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, labels):
            return self.m(input_ids=input_ids, labels=labels, use_cache=False).loss

    return CausalLmLoss(model)


def hf_logits_wrapper(model):
    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False).logits

    return Logits(model)


def perturb_all(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))


def make_hf(kind, seed, pdrop=0.0):
    """pdrop: GPT-2's resid_pdrop, embd_pdrop and attn_pdrop (gpt2 only)."""
    import transformers
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=101, n_embd=32, n_layer=2, n_head=4,
                                      n_positions=64, resid_pdrop=pdrop, embd_pdrop=pdrop,
                                      attn_pdrop=pdrop)
        model = transformers.GPT2LMHeadModel(cfg)
    elif kind == "phi":
        # Phi-1.5 / Phi-2's shape: an LM head with a bias, rotary on half of each head
        # (partial_rotary_factor), attention and MLP in parallel off one layer norm.
        cfg = transformers.PhiConfig(vocab_size=101, hidden_size=32, intermediate_size=88,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     partial_rotary_factor=0.5, max_position_embeddings=64,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
        model = transformers.PhiForCausalLM(cfg)
    elif kind == "neox":
        # Pythia / GPT-NeoX's shape: q | k | v packed per head ([B, T, H, 3D]), rotary on part
        # of each head (rotary_pct), attention and MLP in parallel off two layer norms.
        cfg = transformers.GPTNeoXConfig(vocab_size=101, hidden_size=32, intermediate_size=88,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         rotary_pct=0.5, max_position_embeddings=64,
                                         use_parallel_residual=True, hidden_dropout=0.0,
                                         attention_dropout=0.0)
        model = transformers.GPTNeoXForCausalLM(cfg)
    elif kind == "gptj":
        # GPT-J's shape: an LM head with a bias, interleaved rotary on the first rotary_dim
        # channels of each head, attention and MLP in parallel.
        cfg = transformers.GPTJConfig(vocab_size=101, n_embd=32, n_layer=2, n_head=4,
                                      rotary_dim=4, n_positions=64, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0)
        model = transformers.GPTJForCausalLM(cfg)
    elif kind == "gemma2":
        # Gemma 2's shape: softcapping of the attention scores and of the final logits (caps
        # small enough, with weights drawn at 0.1, to bend them: the loss is 4.73 with them and
        # 5.15 without; larger weights made torch's own f32 gradients stray from f64 by more
        # than the tests' 1e-4), GeGLU, four norms per layer, a tied LM head, 2 kv heads, and
        # a sliding window (8) shorter than the sequence on every other layer.
        cfg = transformers.Gemma2Config(vocab_size=101, hidden_size=32, intermediate_size=88,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, head_dim=8,
                                        max_position_embeddings=64, attn_logit_softcapping=0.3,
                                        final_logit_softcapping=0.5, query_pre_attn_scalar=8,
                                        sliding_window=8, initializer_range=0.1)
        model = transformers.Gemma2ForCausalLM(cfg)
    elif kind == "cohere":
        # Cohere (Command-R)'s shape: a bias-free LayerNorm written out (mean, centered mean
        # square, rsqrt), interleaved rotary, attention and MLP in parallel off one norm, a
        # tied LM head whose logits are scaled by logit_scale.
        cfg = transformers.CohereConfig(vocab_size=101, hidden_size=32, intermediate_size=88,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=64,
                                        logit_scale=0.5, pad_token_id=0)
        model = transformers.CohereForCausalLM(cfg)
    elif kind == "phi3":
        # Phi-3's shape: q | k | v from one projection (K / V narrower: 2 kv heads), sliced;
        # gate | up from one projection, chunked; rotary on whole heads (the pass-through slice
        # empty).
        cfg = transformers.Phi3Config(vocab_size=101, hidden_size=32, intermediate_size=88,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0,
                                      pad_token_id=0)
        model = transformers.Phi3ForCausalLM(cfg)
    elif kind == "gemma3":
        # Gemma 3's shape: per-head RMS norms of q and k after the head transpose, GeGLU, four
        # norms per layer, sliding-window layers (window 8) with their own rotary base. (With
        # query_pre_attn_scalar 8 instead of the default 256, torch's own f32 gradients strayed
        # from f64 by 1.5x the tests' bound; 0.16x with the default.)
        cfg = transformers.Gemma3TextConfig(vocab_size=101, hidden_size=32, intermediate_size=88,
                                            num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, head_dim=8,
                                            max_position_embeddings=64, sliding_window=8)
        model = transformers.Gemma3ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=88,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=64)
        model = transformers.LlamaForCausalLM(cfg)
    perturb_all(model, gen)
    return hf_loss_wrapper(model.eval()).eval()


def hf_case(kind):
    make = lambda: make_hf(kind, 4242)
    gen = torch.Generator().manual_seed(6)
    ids = torch.randint(0, 101, (2, 16), generator=gen)
    cls = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "phi": "PhiForCausalLM",
           "gptj": "GPTJForCausalLM", "neox": "GPTNeoXForCausalLM",
           "gemma2": "Gemma2ForCausalLM", "cohere": "CohereForCausalLM",
           "phi3": "Phi3ForCausalLM", "gemma3": "Gemma3ForCausalLM"}[kind]
    extra = {"llama": ", 2 kv heads, ffn 88", "phi": ", ffn 88, rotary on half of each head",
             "gptj": ", interleaved rotary on 4 of each head's 8 channels",
             "neox": ", ffn 88, q | k | v packed per head, rotary on half of each head",
             "gemma2": ", 2 kv heads, ffn 88, attention / logit softcaps 0.3 / 0.5, sliding "
                       "window 8",
             "cohere": ", 2 kv heads, ffn 88, bias-free LayerNorm, interleaved rotary, logit "
                       "scale 0.5",
             "phi3": ", 2 kv heads, ffn 88, fused q | k | v and gate | up projections",
             "gemma3": ", 2 kv heads, ffn 88, q / k norms after the head transpose, sliding "
                       "window 8"}.get(
                 kind, "")
    return dict(
        name=f"hf_{kind}_loss",
        description=f"transformers {HF_DYNAMO_VERSION if DYNAMO else HF_VERSION} {cls} "
                    f"(vocab 101, 2 layers, dim 32, 4 heads{extra}) with its own "
                    "shifted loss, labels = input_ids; grads/ holds d loss / d param",
        model=make(),
        make_fresh=make,
        inputs=[("input_ids", ids), ("labels", ids.clone())],
        output_names=["loss"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "labels": {0: "batch", 1: "seq"}},
        dims={"batch": 2, "seq": 16},
        training=True,
        opsets=(17,),
        dynamo_opsets=(20, 23),
    )


def hf_padded_loss_case(kind):
    """Training on a right-padded batch (dynamo only): an attention_mask input (row 1's last 6
    positions padding) and labels -100 there."""
    class PaddedLoss(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, labels):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                          use_cache=False).loss

    make = lambda: PaddedLoss(make_hf(kind, 4242).m).eval()
    gen = torch.Generator().manual_seed(9)
    ids = torch.randint(0, 101, (2, 16), generator=gen)
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 10:] = 0
    labels = ids.clone()
    labels[1, 10:] = -100
    return dict(
        name=f"hf_{kind}_padded_loss",
        description=f"transformers {HF_DYNAMO_VERSION} "
                    f"{'GPT2LMHeadModel' if kind == 'gpt2' else 'LlamaForCausalLM'} with its "
                    "shifted loss on a right-padded batch (attention_mask input, labels -100 on "
                    "the padding); grads/ holds d loss / d param",
        model=make(),
        make_fresh=make,
        inputs=[("input_ids", ids), ("attention_mask", mask), ("labels", labels)],
        output_names=["loss"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                      "attention_mask": {0: "batch", 1: "seq"},
                      "labels": {0: "batch", 1: "seq"}},
        dims={"batch": 2, "seq": 16},
        training=True,
        dynamo_opsets=(20, 23),
    )


def case_hf_gpt2_padded_loss():
    return hf_padded_loss_case("gpt2")


def case_hf_llama_logits():
    """Inference: LlamaForCausalLM's logits, exported with the optimizer (dynamo only: at opset 23
    it writes RMSNormalization, RotaryEmbedding and Attention)."""
    model = hf_logits_wrapper(make_hf("llama", 4242).m).eval()
    gen = torch.Generator().manual_seed(7)
    # Batch 1: torch writes RotaryEmbedding's tables as [1, S, D/2], which onnxruntime reads
    # only when that is the batch (ptc broadcasts them).
    ids = torch.randint(0, 101, (1, 16), generator=gen)
    return dict(
        name="hf_llama",
        description=f"transformers {HF_DYNAMO_VERSION} LlamaForCausalLM (vocab 101, 2 layers, "
                    "dim 32, 4 heads, 2 kv heads, ffn 88), logits",
        model=model,
        inputs=[("input_ids", ids)],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        dims={"batch": 1, "seq": 16},
        dynamo_opsets=(23,),
    )


def hf_padded_case(kind):
    """Inference with an attention_mask input (dynamo only): the second row left-padded by 5,
    so the masks transformers builds from it are run-time values; the padded positions'
    logits zeroed."""
    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            logits = self.m(input_ids=input_ids, attention_mask=attention_mask,
                            use_cache=False).logits
            # A padded query attends to nothing: its logits are undefined (torch's fused
            # kernels, its ONNX decomposition and onnxruntime each give other values there).
            # They are zeroed, as a user ignores them.
            return torch.where(attention_mask[..., None] != 0, logits, 0.0)

    model = Logits(make_hf(kind, 4242).m).eval()
    gen = torch.Generator().manual_seed(8)
    ids = torch.randint(0, 101, (2, 16), generator=gen)
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, :5] = 0
    return dict(
        name=f"hf_{kind}_padded",
        description=f"transformers {HF_DYNAMO_VERSION} "
                    f"{'GPT2LMHeadModel' if kind == 'gpt2' else 'LlamaForCausalLM'} logits with "
                    "an attention_mask input (row 1 left-padded by 5)",
        model=model,
        inputs=[("input_ids", ids), ("attention_mask", mask)],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                      "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch", 1: "seq"}},
        dims={"batch": 2, "seq": 16},
        dynamo_opsets=(20, 23),
    )


def case_hf_gpt2_padded():
    return hf_padded_case("gpt2")


def case_hf_llama_padded():
    # Opset 20 only: at 23 torch writes RotaryEmbedding tables [1, S, D/2], which onnxruntime
    # rejects for a batch of 2 (hf_llama_dynamo_opset23 covers the op with a batch of 1).
    return dict(hf_padded_case("llama"), dynamo_opsets=(20,))


def case_hf_gpt2_loss():
    return dict(hf_case("gpt2"), also_optimized=(20,))


def case_hf_gpt2_train_mode():
    # GPT-2's own dropout 0.1 (embd_pdrop, resid_pdrop and attn_pdrop on the attention
    # probabilities), exported in training mode: Dropout nodes with a constant training_mode
    # true. The output is the eval-mode loss, what ptc's inference plans give (they strip
    # dropout); the training steps' masks are ptc's own (tests/train checks that its fused
    # attention dropout trains as the unfused one).
    make = lambda: make_hf("gpt2", 4242, pdrop=0.1)
    case = dict(hf_case("gpt2"), name="hf_gpt2_train_mode", model=make(), make_fresh=make,
                export_training_mode=True)
    case["description"] = case["description"].replace(
        "with its own shifted loss, labels = input_ids; grads/ holds d loss / d param",
        "with GPT-2's dropout 0.1 (embeddings, residual branches, attention probabilities), "
        "exported in training mode (TrainingMode.TRAINING: Dropout with training_mode true); "
        "its own shifted loss, labels = input_ids; output: the eval-mode loss")
    del case["training"]  # no gradient reference: the masks are the runtime's
    return case


def case_hf_llama_loss():
    # At opset 23 the optimizer writes RMSNormalization and RotaryEmbedding too.
    return dict(hf_case("llama"), also_optimized=(23,), ort_rotary_batch_issue=True)


def case_hf_phi_loss():
    # The LM head's bias (linear_ce_loss's fourth input); at opset 23 the optimizer writes the
    # partial rotary as RotaryEmbedding on a slice of each head.
    return dict(hf_case("phi"), dynamo_opsets=(20,), also_optimized=(23,),
                ort_rotary_batch_issue=True)


def case_hf_gptj_loss():
    return dict(hf_case("gptj"), dynamo_opsets=(20,))


def case_hf_neox_loss():
    return dict(hf_case("neox"), dynamo_opsets=(20,))


def case_hf_gemma2_loss():
    return dict(hf_case("gemma2"), dynamo_opsets=(20,))


def case_hf_cohere_loss():
    return dict(hf_case("cohere"), dynamo_opsets=(20,))


def case_hf_phi3_loss():
    return dict(hf_case("phi3"), dynamo_opsets=(20,))


def case_hf_gemma3_loss():
    return dict(hf_case("gemma3"), dynamo_opsets=(20,))


def seq2seq_case(name, description, dropout=0.0, **extra):
    torch.manual_seed(4321)
    gen = torch.Generator().manual_seed(4322)
    model = Seq2Seq(src_vocab=53, tgt_vocab=47, dim=32, n_head=4, max_len=32, dropout=dropout)
    perturb_norms(model, gen)
    model.eval()
    src = torch.randint(0, 53, (2, 12), generator=gen)
    tgt = torch.randint(0, 47, (2, 10), generator=gen)
    return dict(
        name=name,
        description=description,
        model=model,
        inputs=[("src", src), ("tgt", tgt)],
        output_names=["logits"],
        dynamic_axes={"src": {0: "batch", 1: "src_seq"}, "tgt": {0: "batch", 1: "tgt_seq"},
                      "logits": {0: "batch", 1: "tgt_seq"}},
        dims={"batch": 2, "src_seq": 12, "tgt_seq": 10},
        **extra,
    )


def case_seq2seq():
    return seq2seq_case(
        "seq2seq",
        "torch.nn.Transformer encoder-decoder (d_model 32, 4 heads, 2+2 layers, ffn 64, "
        "batch_first) with embeddings, causal tgt mask (triu) and output projection")


def case_seq2seq_train_mode():
    # nn.Transformer's default dropout 0.1 (sublayer outputs, the FFN's hidden activation and
    # the attention probabilities), exported in training mode: Dropout nodes with a constant
    # training_mode true. The output is the eval-mode logits, what ptc's inference plans give
    # (they strip dropout); the training steps' masks are ptc's own (tests/train checks them).
    return seq2seq_case(
        "seq2seq_train_mode",
        "the seq2seq case with nn.Transformer's dropout 0.1, exported in training mode "
        "(TrainingMode.TRAINING: Dropout with training_mode true); output: the eval-mode logits",
        dropout=0.1, opsets=(17,), export_training_mode=True)


# ----------------------------------------------------------------------------------------------
# Export and checks


def save_tensor(path, array, name):
    # np.array, not np.ascontiguousarray: the latter turns a 0-d loss into shape [1].
    proto = onnx.numpy_helper.from_array(np.array(array, order="C"), name=name)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def max_errors(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    abs_err = np.abs(got - want)
    rel_err = abs_err / np.maximum(np.abs(want), 1e-30)
    return float(abs_err.max(initial=0.0)), float(rel_err.max(initial=0.0))


def check_with_ort(model_path, feeds, outputs, label):
    try:
        import onnxruntime as ort
    except ImportError:
        print(f"  {label}: onnxruntime not installed, ORT cross-check skipped")
        return
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    for i, (g, w) in enumerate(zip(got, outputs)):
        if g.shape != w.shape or g.dtype != w.dtype:
            raise SystemExit(f"{label}: ORT output {i} is {g.dtype}{list(g.shape)}, torch's "
                             f"{w.dtype}{list(w.shape)}")
        if not np.allclose(g, w, rtol=RTOL, atol=ATOL):
            a, r = max_errors(g, w)
            raise SystemExit(f"{label}: ORT output {i} differs from torch: max abs {a:g} rel {r:g}")
        a, r = max_errors(g, w)
        print(f"  {label}: ORT output {i} matches torch (max abs {a:.2e}, rel {r:.2e})")


def training_reference(make_fresh, inputs, out_dir, initializer_names, folded_ok=False):
    """Gradients of the loss w.r.t. every parameter, and the losses of a few AdamW steps."""
    model = make_fresh()  # fresh copy: the exported one must stay untouched
    model.train()  # no dropout in these models: train() == eval() numerically
    args = [t for _, t in inputs]
    loss = model(*args)
    loss.backward()
    grads_dir = os.path.join(out_dir, "grads")
    os.makedirs(grads_dir)
    grads = {}
    # The exporter names initializers after the wrapped module's parameters; a tied parameter
    # has several names, of which the exporters keep one (TorchScript: the first, dynamo: any).
    names_of = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(p), []).append(name)
    for name, p in model.named_parameters():
        name = next((n for n in names_of[id(p)] if n in initializer_names), name)
        # folded_ok: torch's optimizer folded the weight into a transposed copy; ptc restores
        # the parameter under this name.
        if name not in initializer_names and not folded_ok:
            raise SystemExit(f"parameter {name} is not an initializer of the exported model "
                             f"(initializers: {sorted(initializer_names)})")
        fname = name + ".pb"
        save_tensor(os.path.join(grads_dir, fname), p.grad.numpy(), name)
        grads[name] = "grads/" + fname

    model = make_fresh()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = model(*args)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {
        "grads": grads,
        "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                  "steps": 5, "note": "same batch every step; loss before each update",
                  "losses": losses},
    }


def export_case(case, opset, root, optimize=None):
    """optimize: the dynamo exporter's optimizer (default: on for inference cases only)."""
    if optimize is None:
        optimize = not case.get("training")
    label = (f"{case['name']}_{'dynamo_' if DYNAMO else ''}"
             f"{'optimized_' if DYNAMO and optimize and case.get('training') else ''}opset{opset}")
    out_dir = os.path.join(root, label)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    model = case["model"]
    input_names = [n for n, _ in case["inputs"]]
    args = tuple(t for _, t in case["inputs"])
    with torch.no_grad():
        outputs = model(*args)
    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    outputs = [o.detach().numpy() for o in outputs]

    model_path = os.path.join(out_dir, "model.onnx")
    if DYNAMO:
        torch.onnx.export(
            model, args, model_path, opset_version=opset, input_names=input_names,
            output_names=case["output_names"], dynamic_axes=case["dynamic_axes"], dynamo=True,
            optimize=optimize)
    else:
        # Exported with grad enabled: keeps nn.Transformer off its fused inference fast path.
        torch.onnx.export(
            model, args, model_path, opset_version=opset, do_constant_folding=False,
            input_names=input_names, output_names=case["output_names"],
            dynamic_axes=case["dynamic_axes"],
            training=torch.onnx.TrainingMode.TRAINING if case.get("export_training_mode")
            else torch.onnx.TrainingMode.EVAL)
    if DYNAMO:
        # Each node's Python stack trace (paths of the machine that wrote it) is 40% of the
        # file and changes with every regeneration; the module scopes the importer reads stay.
        proto = onnx.load(model_path, load_external_data=False)
        for node in proto.graph.node:
            keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
        onnx.save(proto, model_path)
    proto = onnx.load(model_path)
    onnx.checker.check_model(proto, full_check=True)
    op_types = sorted({n.op_type for n in proto.graph.node})
    print(f"{label}: {len(proto.graph.node)} nodes, ops {' '.join(op_types)}")

    feeds = {}
    for i, (name, t) in enumerate(case["inputs"]):
        save_tensor(os.path.join(out_dir, f"input_{i}.pb"), t.numpy(), name)
        feeds[name] = t.numpy()
    for i, (name, o) in enumerate(zip(case["output_names"], outputs)):
        save_tensor(os.path.join(out_dir, f"output_{i}.pb"), o, name)
    if case.get("export_training_mode"):
        # onnxruntime runs training-mode Dropout with its own random masks.
        print(f"  {label}: ORT cross-check skipped (Dropout in training mode draws at random)")
    elif DYNAMO and optimize and case.get("ort_rotary_batch_issue"):
        # torch writes RotaryEmbedding tables [1, S, D/2], which onnxruntime takes only for a
        # batch of 1 (the ONNX spec's [B, S, D/2]); ptc broadcasts them.
        print(f"  {label}: ORT cross-check skipped (its RotaryEmbedding wants [B, S, D/2] tables)")
    else:
        check_with_ort(model_path, feeds, outputs, label)

    meta = {
        "name": case["name"],
        "description": case["description"],
        "opset": opset,
        "model": "model.onnx",
        "dims": case["dims"],
        "inputs": input_names,
        "outputs": case["output_names"],
        "rtol": RTOL,
        "atol": ATOL,
        "onnx_ops": op_types,
        "generator": "tests/e2e/make_references.py (torch %s, onnx %s%s)" % (
            torch.__version__, onnx.__version__,
            ", dynamo exporter, optimize=%s" % optimize if DYNAMO else ""),
    }
    if case.get("training"):
        initializer_names = {init.name for init in proto.graph.initializer}
        meta["training"] = training_reference(case["make_fresh"], case["inputs"], out_dir,
                                              initializer_names, folded_ok=DYNAMO and optimize)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(here, "..", "data", "e2e"))
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only these cases (e.g. hf_phi_loss), the others left as they are")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    root = os.path.normpath(args.out)
    os.makedirs(root, exist_ok=True)
    if DYNAMO:
        makes = [case_gpt, case_gpt_loss, case_llama_loss, case_llama_shifted_loss]
        hf_version = HF_DYNAMO_VERSION
    else:
        makes = [case_gpt, case_gpt_loss, case_seq2seq, case_seq2seq_train_mode, case_llama,
                 case_llama_loss, case_llama_shifted_loss]
        hf_version = HF_VERSION
    try:
        import transformers
        if transformers.__version__ != hf_version:
            print(f"transformers {transformers.__version__} is not {hf_version}: hf_* cases "
                  "left as they are")
        else:
            makes += [case_hf_gpt2_loss, case_hf_llama_loss]
            if not DYNAMO:
                makes += [case_hf_gpt2_train_mode]
            if DYNAMO:
                makes += [case_hf_llama_logits, case_hf_gpt2_padded, case_hf_llama_padded,
                          case_hf_gpt2_padded_loss, case_hf_phi_loss, case_hf_gptj_loss,
                          case_hf_neox_loss, case_hf_gemma2_loss, case_hf_cohere_loss,
                          case_hf_phi3_loss, case_hf_gemma3_loss]
    except ImportError:
        print(f"transformers not installed (pip install transformers=={hf_version}): hf_* "
              "cases left as they are")
    for make in makes:
        if args.only and make.__name__.removeprefix("case_") not in args.only:
            continue
        case = make()
        for opset in case.get("dynamo_opsets", DYNAMO_OPSETS) if DYNAMO else case.get("opsets", OPSETS):
            export_case(case, opset, root)
        for opset in case.get("also_optimized", ()) if DYNAMO else ():
            # Training with the exporter's optimizer on: it folds nn.Linear's w.T (GPT-2: the
            # tied LM head's) into new initializers, which ptc turns back into the parameters.
            export_case(case, opset, root, optimize=True)
    print(f"wrote {root}")


if __name__ == "__main__":
    sys.exit(main())
