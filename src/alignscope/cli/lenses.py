"""CLI commands for the lenses area: ``dla``, ``lens``, ``tuned-lens train|eval`` and ``dilemmas``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from alignscope.cli.common import (
    ChatOpt,
    InterventionOpt,
    JsonOpt,
    ModelOptions,
    emit_json,
    fit_intervention,
    handle_errors,
    model_options,
    out_console,
    read_intervention,
)

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Directory for result files (JSON, CSV, PNG).")]

tuned_app = typer.Typer(help="Train and evaluate a tuned lens (an affine translator per layer).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the lenses commands to ``app``."""
    app.command("dla")(dla_cmd)
    app.command("lens")(lens_cmd)
    app.command("dilemmas")(dilemmas_cmd)
    tuned_app.command("train")(tuned_train_cmd)
    tuned_app.command("eval")(tuned_eval_cmd)
    app.add_typer(tuned_app, name="tuned-lens")


@handle_errors
@model_options(threads=True)
def dla_cmd(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt text.")],
    answer: Annotated[str, typer.Option(help="Answer token text (one token, e.g. ' Paris').")],
    foil: Annotated[str, typer.Option(help="Foil token text (one token).")],
    model: ModelOptions = ModelOptions(),
    by_head: Annotated[bool, typer.Option("--by-head", help="Also attribute to every attention head.")] = False,
    chat: ChatOpt = True,
    intervention: InterventionOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Direct logit attribution of logit[answer] - logit[foil] to embed, attention, MLP (and heads)."""
    from alignscope.lenses.dla import direct_logit_attribution
    from alignscope.reports.lenses import write_dla_outputs
    from alignscope.steering.interventions import intervention_scope

    iv = read_intervention(intervention)
    lm = model.load()
    fit_intervention(iv, lm, intervention)
    with intervention_scope(lm, iv):
        res = direct_logit_attribution(lm, prompt, answer, foil, chat=chat, steered=iv is not None)
    payload = {"model": lm.name, "prompt": prompt, "answer": answer, "foil": foil, **res.to_json(by_head)}
    if out is not None:
        payload["files"] = [str(p) for p in write_dla_outputs(out, lm.name, res, payload, by_head=by_head)]
    if json_out:
        emit_json(payload)
        return
    table = Table(title=f"DLA of logit[{answer!r}] - logit[{foil!r}] = {res.logit_diff:.4f}")
    for col in ("layer", "attn", "mlp", "attn share"):
        table.add_column(col, justify="right")
    ratio = res.attn_mlp_ratio()
    for layer in range(res.attn.shape[0]):
        table.add_row(str(layer), f"{float(res.attn[layer]):+.4f}", f"{float(res.mlp[layer]):+.4f}", f"{ratio[layer]:.2f}")
    out_console.print(table)
    steer = "" if res.intervention is None else f"intervention {res.intervention:+.4f}  "
    out_console.print(f"embed {res.embed:+.4f}  {steer}remainder {res.remainder:+.4f}  sum of parts {res.total():.4f} "
                      f"(model {res.logit_diff:.4f})")


@handle_errors
@model_options(threads=True)
def lens_cmd(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt text.")],
    model: ModelOptions = ModelOptions(),
    tokens: Annotated[list[str] | None, typer.Option("--tokens", "-t", help="Token text to track (one token each); repeatable.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Top tokens per layer.")] = 5,
    tuned: Annotated[Path | None, typer.Option("--tuned", help="Read through a trained tuned lens (directory) instead.")] = None,
    chat: ChatOpt = True,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Logit lens: each layer's resid_post through the final norm and unembedding; top-k and tracked tokens."""
    from alignscope.lenses.logit_lens import logit_lens
    from alignscope.lenses.tuned_lens import TunedLens
    from alignscope.reports.lenses import write_lens_outputs

    lm = model.load()
    lens = None if tuned is None else TunedLens.load(tuned, lm)
    res = logit_lens(lm, prompt, chat=chat, track=tokens or [], top_k=top_k, lens=lens)
    payload = {"model": lm.name, "prompt": prompt, **res.to_json()}
    if out is not None:
        payload["files"] = [str(p) for p in write_lens_outputs(out, lm.name, res, payload)]
    if json_out:
        emit_json(payload)
        return
    table = Table(title=f"{res.kind} lens, last position")
    table.add_column("layer", justify="right")
    table.add_column("top tokens (prob)")
    for t in tokens or []:
        table.add_column(f"{t!r} p / rank", justify="right")
    for layer in res.layers:
        tops = "  ".join(f"{tok!r} {p:.2f}" for tok, p in zip(layer.top_tokens, layer.top_probs, strict=True))
        table.add_row(str(layer.layer), tops, *[f"{layer.tracked[t].prob:.3f} / {layer.tracked[t].rank}" for t in tokens or []])
    out_console.print(table)


@handle_errors
@model_options(device_map=False, threads=True)
def tuned_train_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the lens and checkpoints; a rerun resumes.")],
    model: ModelOptions = ModelOptions(),
    corpus: Annotated[str | None, typer.Option(help="Text file, or hf:NAME[:SPLIT[:FIELD]] (default: the built-in corpus).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 120,
    batch_seqs: Annotated[int, typer.Option(min=1, help="Chunks per step.")] = 8,
    seq_len: Annotated[int, typer.Option(min=2, help="Tokens per chunk.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-3,
    full_vocab: Annotated[bool, typer.Option("--full-vocab", help="Exact full-vocabulary KL in training (slower).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a tuned lens on a corpus (checkpoints every 25 steps; rerun the same command to resume)."""
    from alignscope.lenses.corpus import load_corpus_text, text_sha256, token_chunks
    from alignscope.lenses.train_loop import TrainConfig, train_tuned_lens
    from alignscope.reports.lenses import write_train_summary

    lm = model.load()
    text = load_corpus_text(corpus)
    chunks = token_chunks(lm.tokenizer, text, seq_len)
    config = TrainConfig(steps=steps, batch_seqs=batch_seqs, seq_len=seq_len, lr=lr, target_top_k=0 if full_vocab else TrainConfig.target_top_k)
    lens, report = train_tuned_lens(lm, chunks, out, config=config, corpus_sha=text_sha256(text), progress=True)
    extra = {"corpus": corpus or "builtin", "corpus_sha256": text_sha256(text), "n_chunks": int(chunks.shape[0]),
             "config": config.__dict__, "train": {k: v for k, v in report.to_json().items() if k != "losses"}}
    path = lens.save(out, model=lm.name, extra=extra)
    payload = {"model": lm.name, "lens": str(path), **extra, "losses": report.losses}
    write_train_summary(out, payload)
    if json_out:
        emit_json(payload)
        return
    out_console.print(f"trained {report.steps} steps ({report.tokens} tokens this run, {report.tokens_per_second:.0f} tokens/s); "
                      f"final sampled KL {report.final_loss:.3f} -> {path}")


@handle_errors
@model_options(device_map=False, threads=True)
def tuned_eval_cmd(
    lens_dir: Annotated[Path, typer.Option("--lens", help="Directory written by `tuned-lens train`.")],
    text_file: Annotated[str | None, typer.Option("--text-file", help="Evaluation text (default: the built-in held-out text).")] = None,
    model: ModelOptions = ModelOptions(),
    seq_len: Annotated[int, typer.Option(min=2, help="Tokens per chunk.")] = 128,
    max_chunks: Annotated[int, typer.Option(min=1, help="Evaluate at most this many chunks.")] = 64,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Exact per-layer KL to the final distribution: logit lens vs tuned lens."""
    from alignscope.lenses.corpus import load_corpus_text, token_chunks
    from alignscope.lenses.lens_eval import evaluate_lenses
    from alignscope.lenses.tuned_lens import TunedLens
    from alignscope.reports.lenses import write_lens_eval_outputs

    lm = model.load()
    lens = TunedLens.load(lens_dir, lm)
    chunks = token_chunks(lm.tokenizer, load_corpus_text(text_file, heldout=True), seq_len)[:max_chunks]
    ev = evaluate_lenses(lm, chunks, lens, progress=True)
    payload = {"model": lm.name, "lens": str(lens_dir), "text_file": text_file or "builtin held-out", **ev.to_json()}
    if out is not None:
        write_lens_eval_outputs(out, lm.name, ev, payload)
    if json_out:
        emit_json(payload)
        return
    table = Table(title=f"KL(final || lens) per layer, {ev.n_tokens} tokens")
    for col in ("layer", "logit lens", "tuned lens"):
        table.add_column(col, justify="right")
    for layer, (a, b) in enumerate(zip(ev.kl_logit_lens, ev.kl_tuned_lens or [], strict=True)):
        table.add_row(str(layer), f"{a:.3f}", f"{b:.3f}")
    out_console.print(table)
    out_console.print(f"mean tuned / mean logit lens = {ev.ratio():.3f} (without layer 0: {ev.ratio(skip_first=True):.3f})")


@handle_errors
@model_options(model=False, device_map=False, threads=True)
def dilemmas_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (one subdirectory per model, comparison.csv).")],
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model to analyse; repeat to compare several.")] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="Dilemma JSONL (default: the built-in set).")] = None,
    moralchoice: Annotated[Path | None, typer.Option("--moralchoice", help="A MoralChoice CSV instead of --pairs.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Analyse only the first N pairs.")] = None,
    patch_positions: Annotated[str, typer.Option(help="last, post (post-instruction tokens) or all.")] = "last",
    chat: ChatOpt = True,
    loading: ModelOptions = ModelOptions(),
    json_out: JsonOpt = False,
) -> None:
    """Ethical-dilemma analysis: choice, patching profile, DLA and lens per pair; CSV/PNG/JSON; model comparison."""
    from alignscope.dilemmas.schema import load_dilemmas
    from alignscope.dilemmas.summary import analyse_dilemmas, summarise
    from alignscope.reports.dilemmas import compare_row, write_comparison, write_model_report

    if moralchoice is not None:
        from alignscope.dilemmas.moralchoice import load_moralchoice

        dilemmas = load_moralchoice(moralchoice)
    else:
        dilemmas = load_dilemmas(pairs)
    dilemmas = dilemmas[:limit] if limit else dilemmas
    summaries, models = [], []
    for name in model or ["default"]:
        lm = replace(loading, model=name).load()
        results = analyse_dilemmas(lm, dilemmas, chat=chat, positions=patch_positions, progress=True)
        summary = summarise(lm.name, results)
        files = write_model_report(out / _slug(lm.name), summary, results)
        summaries.append(summary)
        models.append({**summary.to_json(), "files": [str(p) for p in files]})
    comparison = write_comparison(out, summaries)
    rows = [compare_row(s) for s in summaries]
    payload = {"out": str(out), "comparison": rows, "comparison_csv": str(comparison), "models": models}
    if json_out:
        emit_json(payload)
        return
    table = Table(title="Ethical-dilemma comparison")
    for col in ("model", "n", "ethical (base)", "ethical (swapped)", "consistent", "peak layer", "flip layers"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["model"], str(row["n_pairs"]), row["chose_ethical_base"], row["chose_ethical_cf"], row["consistent"],
                      str(row["mean_peak_layer"]), str(row["mean_n_flip_layers"]))
    out_console.print(table)
    out_console.print(f"files under {out}")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_") or "model"
