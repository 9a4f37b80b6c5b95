"""PyTorch's own bf16 decode speed on Llama-3.1-8B shapes, measured as gpt-fast does: random bf16
weights on the GPU, a static KV cache, the one-token decode step compiled with torch.compile
(mode="reduce-overhead": CUDA graphs), greedy, batch 1. The peer figure next to
`lowbit bench --device cuda --arch llama-3.1-8b --quant bf16` in the same run.

    python3 bench/cuda/torch_decode.py [-n 200] [--prompt-len 128] [--no-compile]

Prints one line: decode tok/s, prefill tok/s, compile seconds, peak GPU memory.
"""
import argparse
import time

import torch
import torch.nn.functional as F

D, FF, L, H, KV, HD, V = 4096, 14336, 32, 32, 8, 128, 128256
THETA = 500000.0


def rope_tables(max_seq, device):
    # Llama 3 frequency scaling (factor 8, low 1, high 4, original 8192), as the checkpoint config.
    inv = 1.0 / THETA ** (torch.arange(0, HD, 2, dtype=torch.float32, device=device) / HD)
    wavelen = 2 * torch.pi / inv
    low, high, factor, old = 8192 / 1.0, 8192 / 4.0, 8.0, 8192
    smooth = (old / wavelen - 1.0) / (4.0 - 1.0)
    scaled = torch.where(wavelen > low, inv / factor, inv)
    mid = (wavelen <= low) & (wavelen >= high)
    inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    ang = torch.outer(torch.arange(max_seq, device=device, dtype=torch.float32), inv)
    return torch.cos(ang), torch.sin(ang)


def rotate(x, cos, sin):  # x [B, heads, T, HD]; cos/sin [T, HD/2]
    x1, x2 = x[..., : HD // 2].float(), x[..., HD // 2:].float()
    c, s = cos[None, None], sin[None, None]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def rms(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w


class Layer(torch.nn.Module):
    def __init__(self, r, device, max_seq):
        super().__init__()
        self.register_buffer("wqkv", r((H + 2 * KV) * HD, D))
        self.register_buffer("wo", r(D, H * HD))
        self.register_buffer("w13", r(2 * FF, D))
        self.register_buffer("w2", r(D, FF))
        self.register_buffer("n1", torch.ones(D, device=device, dtype=torch.bfloat16))
        self.register_buffer("n2", torch.ones(D, device=device, dtype=torch.bfloat16))
        self.register_buffer("k", torch.zeros(1, KV, max_seq, HD, device=device, dtype=torch.bfloat16))
        self.register_buffer("v", torch.zeros(1, KV, max_seq, HD, device=device, dtype=torch.bfloat16))


class Model(torch.nn.Module):
    def __init__(self, max_seq, device):
        super().__init__()
        g = torch.Generator(device=device).manual_seed(0)
        r = lambda *s: (torch.randn(*s, generator=g, device=device, dtype=torch.bfloat16) * 0.02)
        self.register_buffer("emb", r(V, D))
        self.layers = torch.nn.ModuleList([Layer(r, device, max_seq) for _ in range(L)])
        self.register_buffer("norm", torch.ones(D, device=device, dtype=torch.bfloat16))
        self.register_buffer("head", r(V, D))
        cos, sin = rope_tables(max_seq, device)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.max_seq = max_seq

    def forward(self, tokens, pos):  # tokens [1, T], pos [T] (int64 positions)
        T = tokens.shape[1]
        x = self.emb[tokens]
        cos, sin = self.cos[pos], self.sin[pos]
        mask = torch.arange(self.max_seq, device=tokens.device)[None, :] <= pos[:, None]  # [T, S]
        for p in self.layers:
            h = rms(x, p.n1)
            qkv = F.linear(h, p.wqkv)
            q, k, v = qkv.split([H * HD, KV * HD, KV * HD], dim=-1)
            q = rotate(q.view(1, T, H, HD).transpose(1, 2), cos, sin)
            k = rotate(k.view(1, T, KV, HD).transpose(1, 2), cos, sin)
            v = v.view(1, T, KV, HD).transpose(1, 2)
            p.k.index_copy_(2, pos, k)
            p.v.index_copy_(2, pos, v)
            kk = p.k.repeat_interleave(H // KV, dim=1)
            vv = p.v.repeat_interleave(H // KV, dim=1)
            a = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask[None, None])
            x = x + F.linear(a.transpose(1, 2).reshape(1, T, H * HD), p.wo)
            h = rms(x, p.n2)
            g, u = F.linear(h, p.w13).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, p.w2)
        return F.linear(rms(x[:, -1:], self.norm), self.head)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    dev = "cuda"
    torch.manual_seed(0)
    with torch.no_grad():
        m = Model(a.prompt_len + a.n + 8, dev)
        prompt = torch.randint(0, V, (1, a.prompt_len), device=dev)
        step = m.forward
        t0 = time.time()
        if not a.no_compile:
            step = torch.compile(m.forward, mode="reduce-overhead", fullgraph=True)
        # Warm-up: eager prefill, then compile and capture the decode step (two calls).
        logits = m.forward(prompt, torch.arange(a.prompt_len, device=dev))
        tok = logits.argmax(-1).view(1, 1)
        for i in range(3):
            pos = torch.tensor([a.prompt_len + i], device=dev)
            tok = step(tok, pos).argmax(-1).view(1, 1).clone()
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        torch.cuda.synchronize()
        t1 = time.time()
        logits = m.forward(prompt, torch.arange(a.prompt_len, device=dev))
        torch.cuda.synchronize()
        prefill_tps = a.prompt_len / (time.time() - t1)
        tok = logits.argmax(-1).view(1, 1)
        t1 = time.time()
        for i in range(a.n):
            pos = torch.tensor([a.prompt_len + i], device=dev)
            tok = step(tok, pos).argmax(-1).view(1, 1).clone()
        torch.cuda.synchronize()
        decode_tps = a.n / (time.time() - t1)
    print(f"torch {torch.__version__} bf16 decode {decode_tps:.1f} tok/s, prefill ({a.prompt_len} tokens) "
          f"{prefill_tps:.0f} tok/s, compile+warm-up {compile_s:.0f} s, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
