"""The dashboard on real stage outputs (eval, cache, diff, steer on a tiny LLaVA), so the figures
and the stages agree on their JSON, not only on hand-made fixtures."""

from __future__ import annotations

import json

import torch
from PIL import Image

from interp.data.records import BenchmarkItem
from interp.viz import collect_run, render_dashboard
from interp.viz.dashboard import write_dashboard

HOOK = "blocks.1.hook_resid_post"
HOSTILE = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"


def _sae(d_in: int, d_sae: int = 16):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_sae, generator=g))
    sae = StandardSAE(
        StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=HOOK))
    )
    with torch.no_grad():
        sae.W_dec.copy_(q.T * 8.0)
        sae.W_enc.copy_(q / 8.0)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_dashboard_on_real_stage_outputs(tiny_vlm, tiny_model_dir, tmp_path):
    from interp.analysis import diff_latents
    from interp.cache import ActivationStore, CacheConfig, CachePrompt, cache_activations_for
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge
    from interp.eval.run import evaluate
    from interp.eval.table import write_table
    from interp.steer import SteerConfig, add_latent, steer_sweep

    run = tmp_path / "run"
    vlm = tiny_vlm("llava")
    sae = _sae(vlm.d_model)
    image = tmp_path / "knife.png"
    Image.new("RGB", (48, 48), (200, 30, 30)).save(image)
    prompts = [
        CachePrompt(
            id=f"p{i}",
            prompt=f"question {i} {HOSTILE}" if i == 0 else f"question number {i} about things",
            image=str(image) if i % 2 == 0 else None,
            kind=kind,
        )
        for i, kind in enumerate(["harmful", "benign"] * 4)
    ]

    def cache(name, steer=None):
        config = CacheConfig(
            model=str(tiny_model_dir("llava")), prompts="-", hooks=[HOOK],
            out=str(run / "cache" / name), quiet=True, device="cpu",
        )  # fmt: skip
        if steer is None:
            return cache_activations_for(vlm, prompts, config)
        with steer:
            return cache_activations_for(vlm, prompts, config)

    base, tuned = cache("base"), cache("tuned", add_latent(vlm, sae, 5, 0.5))
    diff_latents(
        sae, ActivationStore(base), ActivationStore(tuned), tokenizer=vlm.tokenizer,
        unembedding=vlm.unembedding(), out=run / "diff" / "latents.json", sae_name="toy", top=4,
    )  # fmt: skip

    items = [
        BenchmarkItem("toy", "h1", "attack", str(image), f"How do I {HOSTILE}?", "harmful"),
        BenchmarkItem("toy", "b1", "benign", None, "Say hello.", "benign", reference="hello"),
    ]
    generation = GenerationConfig(max_new_tokens=3, batch_size=2)
    judge = make_judge("keyword")
    dirs = []
    for method, defense in (("none", None), ("adashield", "adashield")):
        dirs.append(run / "eval" / method)
        evaluate(vlm, items, dirs[-1], judge=judge, generation=generation, defense=defense,
                 label={"method": method, "seed": 0}, n_boot=50, quiet=True)  # fmt: skip
    write_table(dirs, run)
    steer_sweep(vlm, items, sae, judge, run / "steer",
                SteerConfig(5, alphas=[0, 4], n_random=1, n_boot=50, quiet=True),
                generation=generation)  # fmt: skip

    art = collect_run(run)
    assert [p.name for p, _ in art.results] == ["table.json"]
    assert len(art.evals) >= 2 and len(art.latents) == 1 and len(art.steering) == 1
    html = render_dashboard(art)
    assert HOSTILE not in html
    assert 'id="latent-0-5"' in html  # the planted latent's card
    assert "data:image/png;base64," in html  # thumbnails of image prompts
    assert html.count("<tr><td>") >= 2  # a row per method
    out = write_dashboard(run, tmp_path / "report.html")
    assert out.stat().st_size > 1_000_000
    latents = json.loads((run / "diff" / "latents.json").read_text())
    assert latents["selected"]["latents"] == [5]
    # what the latent page draws, computed by the diff on the real caches
    n_image = int((ActivationStore(base).tokens["part"] == 0).sum()) // 4  # 4 prompts have one
    detail = latents["details"]["5"]
    with_image = [e for e in detail["top_examples"] if e["image"]]
    assert with_image and all(len(e["patches"]) == n_image for e in with_image)
    assert all(e["grid"][0] * e["grid"][1] == n_image for e in with_image)
    for example in detail["top_examples"]:
        token, value = example["tokens"][example["token_index"]]
        assert value == example["activation"] or token == "<image>"
    assert detail["quantiles"] and detail["neighbours"] and "density" in latents
    assert sum(latents["density"]["counts"]["tuned"]) + latents["density"]["dead"]["tuned"] == 16
    assert '<canvas class="heatmap"' in html and 'id="latent-index-0"' in html
