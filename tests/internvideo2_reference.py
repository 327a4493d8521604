"""Independent, deliberately naive InternVideo2 reference written from the fact sheet (for tests only).

It reads the OFFICIAL parameter names straight from a state dict and uses explicit loops/matrices:
hand-written RMSNorm/LayerNorm, attention with an explicit softmax, patch embedding as a matmul over
unfolded patches, position-table interpolation through explicit 1-D interpolation matrices, and a
BERT/Q-Former layer written from the BERT definition. Float64 throughout.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def rmsnorm(x: Tensor, w: Tensor, eps: float = 1e-6) -> Tensor:
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def layernorm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """q [B, Nq, C], k/v [B, Nk, C] -> [B, Nq, C], explicit softmax per head."""
    _b, _nq, c = q.shape
    d = c // heads
    out = torch.empty_like(q)
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d)  # [B, Nq, Nk]
        if mask is not None:  # [B, Nk] 1 = keep
            scores = scores.masked_fill(mask[:, None, :] == 0, float("-inf"))
        scores = scores - scores.max(-1, keepdim=True).values
        p = torch.exp(scores)
        p = p / p.sum(-1, keepdim=True)
        out[..., sl] = p @ v[..., sl]
    return out


def linear(sd: dict[str, Tensor], name: str, x: Tensor, bias: bool = True) -> Tensor:
    y = x @ sd[name + ".weight"].double().T
    return y + sd[name + ".bias"].double() if bias else y


# ---------------------------------------------------------------------------------------------- interpolation


def linear_matrix(n_in: int, n_out: int) -> Tensor:
    """[n_out, n_in] linear interpolation, align_corners=False (half-pixel centres, clamped at the edges)."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(math.floor(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        m[i, i0] += 1 - t
        m[i, i1] += t
    return m


def cubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> Tensor:
    """[n_out, n_in] bicubic (Keys kernel, a = -0.75) interpolation, align_corners=False, border-clamped taps."""

    def k(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = (i + 0.5) * n_in / n_out - 0.5  # not clamped for cubic
        f = math.floor(src)
        t = src - f
        for j, dist in zip(range(f - 1, f + 3), (1 + t, t, 1 - t, 2 - t), strict=True):
            m[i, min(max(j, 0), n_in - 1)] += k(dist)
    return m


def resample_table(table: Tensor, t0: int, t: int, gh: int, gw: int) -> Tensor:
    """[1, 1 + t0*g0*g0, C] -> [1, 1 + t*gh*gw, C]: linear over time, bicubic over space, cls row kept."""
    c = table.shape[-1]
    g0 = round(math.sqrt((table.shape[1] - 1) / t0))
    grid = table[0, 1:].double().reshape(t0, g0, g0, c)
    out = torch.einsum("Tt,Hh,Ww,thwc->THWc", linear_matrix(t0, t), cubic_matrix(g0, gh), cubic_matrix(g0, gw), grid)
    return torch.cat([table[:, :1].double(), out.reshape(1, t * gh * gw, c)], dim=1)


# ---------------------------------------------------------------------------------------------- ViT


def vit(sd: dict[str, Tensor], frames: Tensor, heads: int, num_blocks: int, prefix: str = "vision_encoder.") -> Tensor:
    """frames [B, T, 3, H, W] normalised -> tokens [B, 1 + T*gh*gw, C] after `num_blocks` blocks."""
    g = {k[len(prefix) :]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    x = frames.double()
    b, t, _, h, w = x.shape
    wp = g["patch_embed.proj.weight"]  # [C, 3, 1, p, p]
    c, p = wp.shape[0], wp.shape[-1]
    gh, gw = h // p, w // p
    # patches in (t, row, col) order, each flattened as (channel, py, px)
    patches = x.reshape(b, t, 3, gh, p, gw, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, t * gh * gw, 3 * p * p)
    tok = patches @ wp.reshape(c, -1).T + g["patch_embed.proj.bias"]
    tok = torch.cat([g["cls_token"].expand(b, 1, c), tok], dim=1)
    if t == 1 and "img_pos_embed" in g:
        table, t0 = g["img_pos_embed"], 1
    else:
        table = g["pos_embed"]
        g0 = round(math.sqrt(sd[prefix + "img_pos_embed"].shape[1] - 1)) if prefix + "img_pos_embed" in sd else None
        t0 = (table.shape[1] - 1) // (g0 * g0) if g0 else None
        if t0 is None:
            raise ValueError("reference needs img_pos_embed to know the grid")
    x = tok + resample_table(table, t0, t, gh, gw)
    for i in range(num_blocks):
        q = f"blocks.{i}."
        ls1 = g.get(q + "ls1", g.get(q + "ls1.gamma"))
        ls2 = g.get(q + "ls2", g.get(q + "ls2.gamma"))
        y = rmsnorm(x, g[q + "norm1.weight"])
        qkv = y @ g[q + "attn.qkv.weight"].T
        qq, kk, vv = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
        qq, kk = rmsnorm(qq, g[q + "attn.q_norm.weight"]), rmsnorm(kk, g[q + "attn.k_norm.weight"])
        a = attention(qq, kk, vv, heads) @ g[q + "attn.proj.weight"].T + g[q + "attn.proj.bias"]
        x = x + ls1 * a
        y = rmsnorm(x, g[q + "norm2.weight"])
        m = (
            gelu(y @ g[q + "mlp.fc1.weight"].T + g[q + "mlp.fc1.bias"]) @ g[q + "mlp.fc2.weight"].T
            + g[q + "mlp.fc2.bias"]
        )
        x = x + ls2 * m
    return x


# ---------------------------------------------------------------------------------------------- BERT / Q-Former


def bert_sublayer(sd, name: str, x: Tensor, kv: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """Attention block: (self or cross) attention -> dense -> residual -> LayerNorm(eps 1e-12)."""
    q = linear(sd, name + ".self.query", x)
    k = linear(sd, name + ".self.key", kv)
    v = linear(sd, name + ".self.value", kv)
    a = linear(sd, name + ".output.dense", attention(q, k, v, heads, mask))
    return layernorm(
        a + x, sd[name + ".output.LayerNorm.weight"].double(), sd[name + ".output.LayerNorm.bias"].double(), 1e-12
    )


def bert_ffn(sd, name_in: str, name_out: str, x: Tensor) -> Tensor:
    y = linear(sd, name_out + ".dense", gelu(linear(sd, name_in + ".dense", x)))
    return layernorm(
        y + x, sd[name_out + ".LayerNorm.weight"].double(), sd[name_out + ".LayerNorm.bias"].double(), 1e-12
    )


def qformer(sd, vision: Tensor, heads: int, layers: int, prefix: str = "qformer.bert.") -> Tensor:
    """96 queries (query_tokens ++ extra_query_tokens), no text; cross-attention where the layer has it."""
    b = vision.shape[0]
    q = torch.cat([sd["query_tokens"], sd["extra_query_tokens"]], dim=1).double().expand(b, -1, -1)
    x = layernorm(
        q, sd[prefix + "embeddings.LayerNorm.weight"].double(), sd[prefix + "embeddings.LayerNorm.bias"].double(), 1e-12
    )
    for i in range(layers):
        p = f"{prefix}encoder.layer.{i}."
        x = bert_sublayer(sd, p + "attention", x, x, heads)
        if p + "crossattention.self.query.weight" in sd:
            x = bert_sublayer(sd, p + "crossattention", x, vision, heads)
        x = bert_ffn(sd, p + "intermediate_query", p + "output_query", x)
    return x


def bridge(sd, tokens: Tensor, qf_heads: int, qf_layers: int) -> Tensor:
    """ViT tokens -> vision_layernorm -> Q-Former -> project_up."""
    tokens = layernorm(tokens, sd["vision_layernorm.weight"].double(), sd["vision_layernorm.bias"].double(), 1e-12)
    return linear(sd, "project_up", qformer(sd, tokens.double(), qf_heads, qf_layers))


def bert_text(
    sd, input_ids: Tensor, mask: Tensor, heads: int, layers: int, prefix: str = "text_encoder.bert."
) -> Tensor:
    """CLS hidden state after `layers` text-only BERT layers."""
    e = prefix + "embeddings."
    pos = torch.arange(input_ids.shape[1])
    x = sd[e + "word_embeddings.weight"].double()[input_ids] + sd[e + "position_embeddings.weight"].double()[pos]
    x = x + sd[e + "token_type_embeddings.weight"].double()[0]
    x = layernorm(x, sd[e + "LayerNorm.weight"].double(), sd[e + "LayerNorm.bias"].double(), 1e-12)
    for i in range(layers):
        p = f"{prefix}encoder.layer.{i}."
        x = bert_sublayer(sd, p + "attention", x, x, heads, mask)
        x = bert_ffn(sd, p + "intermediate", p + "output", x)
    return x[:, 0]


# ---------------------------------------------------------------------------------------------- stage-2 pooling


def attention_pool(sd, x: Tensor, heads: int, prefix: str = "vision_encoder.clip_projector.") -> Tensor:
    """Query = token mean; LayerNorm(1e-5) on q/k/v inputs; q/k/v weight + separate bias; proj. -> [B, out]."""
    g = {k[len(prefix) :]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    xq = layernorm(x.mean(1, keepdim=True), g["norm1_q.weight"], g["norm1_q.bias"], 1e-5)
    xk = layernorm(x, g["norm1_k.weight"], g["norm1_k.bias"], 1e-5)
    xv = layernorm(x, g["norm1_v.weight"], g["norm1_v.bias"], 1e-5)
    q = xq @ g["cross_attn.q.weight"].T + g["cross_attn.q_bias"]
    k = xk @ g["cross_attn.k.weight"].T + g["cross_attn.k_bias"]
    v = xv @ g["cross_attn.v.weight"].T + g["cross_attn.v_bias"]
    out = attention(q, k, v, heads) @ g["cross_attn.proj.weight"].T + g["cross_attn.proj.bias"]
    return out[:, 0]


def l2norm(x: Tensor) -> Tensor:
    return x / torch.sqrt((x * x).sum(-1, keepdim=True))
