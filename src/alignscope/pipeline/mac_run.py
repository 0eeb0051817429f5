"""``alignscope mac train``: build the data, train every variant, compare them on held-out prompts, report.

Stages, each checkpointed in ``OUT/stages/`` (a killed run resumes; training itself also
checkpoints every few steps under ``OUT/train/<variant>/checkpoint``):

==============  ===========================================================================
stage           does
==============  ===========================================================================
data            train/val examples of the configured mixes and sources; the examples without
                a response get the unsteered model's own greedy answer (self-distillation)
axes            the sensors' starting directions at the circuit's layer: ``harmless`` =
                mean(harmful) - mean(harmless), ``helpful`` = mean(lookalike) - mean(harmful)
                (last prompt token), ``honest`` = mean(question + true answer) - mean(question +
                false answer) on the honest train items; other axis names start at random
train_<v>       one per variant: ``module`` (circuit alone), ``lora`` (LoRA alone, the same data
                and schedule), ``module_lora`` (both)
eval_<row>      one per comparison row: ``base``, ``addition``, ``conscience`` (when configured)
                and each variant, on the test splits (see :mod:`alignscope.recipes.mac_eval`)
==============  ===========================================================================

Files: ``mac.safetensors`` (the ``module`` variant's circuit; ``module_lora/mac.safetensors``
for the other), ``lora/adapter/`` and ``module_lora/adapter/`` (peft, safetensors),
``lora_only_merged/`` (the LoRA-only model merged into a plain HF directory that every command
takes as ``--model``), ``training.json``, ``comparison.json``, ``comparison.csv``, PNGs and
``report.html`` (written by :mod:`alignscope.reports.mac`).

Example:
    >>> run = run_mac(load_mac_config(None), "out/mac")          # doctest: +SKIP
    >>> run.summary()["trainable_pct"]                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from alignscope.data.builtin_sets import load_builtin
from alignscope.data.training import Example, MCItem, load_honest_mc, load_mix, load_training_source
from alignscope.errors import InputError, in_stage
from alignscope.evals.generation import generate
from alignscope.evals.judge import Judge
from alignscope.evals.ratings import RatingSummary
from alignscope.evals.truthfulqa import TruthfulQAResult
from alignscope.io import atomic_dir, atomic_write_json, sha256_json, tensors_digest
from alignscope.lenses.corpus import load_corpus_text
from alignscope.models.identity import dtype_name, resume_key, weights_hash
from alignscope.models.loader import LoadedModel, load_hf, load_model, resolve_device, resolve_dtype
from alignscope.pipeline.mac_config import MacConfig
from alignscope.pipeline.store import StageRecord, StageStore, fingerprint
from alignscope.recipes.conscience import fit_conscience
from alignscope.recipes.mac_eval import CompareRow, TestSets, evaluate_row, judge_ratings
from alignscope.recipes.mac_init import probe_gate_init
from alignscope.recipes.mac_train import TrainResult, linear_names, settings_key, train
from alignscope.stats import rate
from alignscope.steering.circuit import AlignmentCircuit, load_circuit
from alignscope.steering.directions import diff_in_means
from alignscope.steering.intervention_io import load_intervention, save_intervention
from alignscope.steering.interventions import ActivationAddition, Intervention
from alignscope.tables import write_csv

log = logging.getLogger(__name__)

MERGED = {"lora": "lora_only_merged", "module_lora": "module_lora_merged"}


@dataclass
class MacRun:
    """A finished ``mac train`` run: the config, the per-variant training summaries and the comparison rows."""

    out_dir: Path
    config: MacConfig
    model: str
    training: dict[str, dict[str, Any]]
    rows: list[CompareRow]
    seconds: float
    circuits: dict[str, AlignmentCircuit] = field(default_factory=dict)
    lm: LoadedModel | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The last ``--json`` line: trainable parameters, their share, training seconds and the comparison table."""
        main = self.training.get("module") or next(iter(self.training.values()))
        return {"model": self.model, "trainable_params": main["trainable_params"], "trainable_pct": main["trainable_pct"],
                "train_seconds": main["train_seconds"], "training": {k: {key: v[key] for key in
                                                                          ("trainable_params", "trainable_pct", "train_seconds")}
                                                                      for k, v in self.training.items()},
                "comparison": [r.to_json() for r in self.rows], "seconds": round(self.seconds, 3)}


def _found(cfg: MacConfig, split: str) -> list[Example]:
    """Examples of the configured mixes and sources for ``split`` (responses None where self-distilled)."""
    found: list[Example] = []
    for name in cfg.data.mixes:
        mix = list(load_mix(name, split, seed=cfg.train.seed))
        if cfg.data.max_examples_per_mix is not None and len(mix) > cfg.data.max_examples_per_mix:
            pick = torch.randperm(len(mix), generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
            mix = [mix[i] for i in sorted(pick[:cfg.data.max_examples_per_mix])]
        found += mix
    for spec in cfg.data.sources:
        found += [e for e in load_training_source(spec, seed=cfg.train.seed) if e.split == split]
    return found


def _distil(lm: LoadedModel, cfg: MacConfig, found: list[Example], progress: bool) -> list[dict[str, Any]]:
    """The examples as records, missing responses filled by the model's own greedy answers."""
    missing = [i for i, e in enumerate(found) if e.response is None]
    answers = generate(lm, [found[i].prompt for i in missing], max_new_tokens=cfg.data.distill_tokens, progress=progress) if missing else []
    filled = dict(zip(missing, answers, strict=True))
    return [{"prompt": e.prompt, "response": filled.get(i, e.response), "mix": e.mix, "id": e.id,
             "distilled": i in filled, "refusal": e.style is not None} for i, e in enumerate(found)]


def starting_values(lm: LoadedModel, cfg: MacConfig, layer: int, progress: bool) -> dict[str, torch.Tensor]:
    """``axes``: unit starting directions of the sensors (see the module docstring), ``(n_axes, d_model)``;
    ``harmful_minus_harmless``: the raw mean difference behind the ``harmless`` axis (the addition row's vector);
    with ``train.gate_init: probe``, ``init/<name>``: the circuit's starting values (:mod:`alignscope.recipes.mac_init`)."""
    def mean_diff(pos: list[str], neg: list[str], chat: bool) -> torch.Tensor:
        md = diff_in_means(lm, pos, neg, component="resid_post", positions="last", layers=[layer], chat=chat, progress=progress)
        return md.direction(layer)

    harmful, harmless = load_builtin("harmful", split="train").texts, load_builtin("harmless", split="train").texts
    lookalike = load_builtin("lookalike", split="train").texts
    honest = load_honest_mc("train")
    refusal = mean_diff(harmful, harmless, True)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    rows = []
    for name in cfg.train.axes:
        if name == "harmless":
            v = refusal
        elif name == "helpful":
            v = mean_diff(lookalike, harmful, True)
        elif name == "honest":
            true = [f"Q: {m.question}\nA: {m.mc1_choices[m.mc1_correct_index]}" for m in honest]
            false = [f"Q: {m.question}\nA: {next(c for i, c in enumerate(m.mc1_choices) if i != m.mc1_correct_index)}" for m in honest]
            v = mean_diff(true, false, False)
        else:
            v = torch.randn(lm.d_model, generator=gen)
        rows.append(torch.nn.functional.normalize(v.float(), dim=0))
    out = {"axes": torch.stack(rows), "harmful_minus_harmless": refusal.float()}
    if cfg.train.gate_init == "probe":
        start = probe_gate_init(lm, layer, harmful, [harmless, lookalike], out["axes"], list(cfg.train.axes).index(cfg.train.gate_axis),
                                width=cfg.train.width, scale=cfg.train.gate_scale, margin=cfg.train.gate_margin,
                                progress=progress)
        out |= {f"init/{name}": value for name, value in start.items()}
    return out


def start_settings(cfg: MacConfig, layer: int) -> list[Any]:
    """Every setting :func:`starting_values` reads besides the data (part of the ``axes`` stage's fingerprint)."""
    t = cfg.train
    return [list(t.axes), layer, t.seed, t.gate_init, t.gate_axis, t.width, t.gate_scale, t.gate_margin]


def circuit_start(axes_stage: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The circuit's starting values from the ``axes`` stage's tensors: its ``init/`` values, else the sensor ``axes``."""
    start = {name.removeprefix("init/"): t for name, t in axes_stage.items() if name.startswith("init/")}
    return start or {"axes": axes_stage["axes"]}


def variant_files(out: Path, variant: str) -> list[str]:
    """The weight files a variant's training wrote (its circuit, adapter and merged model, however many shards),
    relative to the run directory; its stage records their hashes, so a missing or altered one is trained again."""
    where = out if variant == "module" else out / variant
    found = [where / "mac.safetensors"] if variant != "lora" else []
    if variant in MERGED:
        found += sorted((where / "adapter").glob("*.safetensors")) + sorted((out / MERGED[variant]).glob("*.safetensors"))
    return [str(p.relative_to(out)) for p in found]


def _train_variant(lm: LoadedModel, cfg: MacConfig, variant: str, records: list[dict[str, Any]], init: dict[str, torch.Tensor],
                   out: Path, progress: bool) -> TrainResult:
    device = resolve_device(cfg.device)
    settings = cfg.settings(variant)
    model, _ = load_hf(lm.source, resolve_dtype(cfg.dtype, device), device, load_in_4bit=settings.qlora)
    result = train(model, lm.tokenizer, [(e["prompt"], e["response"]) for e in records], settings, out_dir=out / "train" / variant,
                   progress=progress, init=init if settings.module else None, keep=[bool(e["distilled"]) for e in records],
                   refuse=[bool(e["refusal"]) for e in records])
    where = out if variant == "module" else out / variant
    if result.circuit is not None:
        save_intervention(where / "mac.safetensors", result.circuit, model=lm.name)
    if settings.lora is not None:  # each directory is filled aside and renamed into place: a kill leaves no half model
        with atomic_dir(where / "adapter") as tmp:
            result.model.save_pretrained(str(tmp), safe_serialization=True)  # type: ignore[operator]
        merged = result.model.merge_and_unload()  # type: ignore[operator]
        with atomic_dir(out / MERGED[variant]) as tmp:
            merged.save_pretrained(str(tmp), safe_serialization=True)
            lm.tokenizer.save_pretrained(str(tmp))
    return result


def _row_record(row: CompareRow) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    out = row.to_json()
    out["mc"] = row.mc.to_json()
    out["generations"] = row.generations
    return out, ({} if row.first_logits is None else {"first_logits": row.first_logits})


def _row_from_record(rec: StageRecord, mc_items: Sequence[MCItem]) -> CompareRow:
    o = rec.output
    refusal = {k: rate(int(v["k"]), int(v["n"])) for k, v in o["refusal"].items()}
    items = o["mc"]["items"]  # the scores follow from the stored log-likelihoods, as when they were computed
    result = TruthfulQAResult.from_logliks(mc_items, [i["mc1_logliks"] for i in items], [i["mc2_logliks"] for i in items])
    return CompareRow(o["name"], refusal, result, o["kl"], o["perplexity"], o["throughput_ratio"], o["trainable_params"],
                      o["trainable_pct"], o["train_seconds"], rec.tensors.get("first_logits"), o["generations"])


def _test_sets(limit: int | None) -> TestSets:
    sets = [load_builtin(name, split="test") for name in ("harmful", "harmless", "lookalike")]
    return TestSets(*(s if limit is None else s[:limit] for s in sets))


def _conscience(lm: LoadedModel, spec: str, progress: bool) -> Intervention | None:
    if spec == "none":
        return None
    if spec != "fit":
        return load_intervention(spec)
    fit = fit_conscience(lm, load_builtin("harmful", split="train"), load_builtin("harmless", split="train"),
                         load_builtin("harmful", split="val"), load_builtin("harmless", split="val"),
                         lookalike_train=load_builtin("lookalike", split="train"), lookalike_val=load_builtin("lookalike", split="val"),
                         progress=progress)
    return fit.intervention


def run_mac(cfg: MacConfig, out_dir: str | Path, *, progress: bool = False) -> MacRun:
    """Run every stage (reusing finished ones) and return the run; the report is written by the caller."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    store = StageStore(out)
    key = resume_key(weights_hash(lm.source)["sha256"], dtype_name(lm.dtype))
    layer = lm.n_layers // 2 if cfg.train.layer is None else cfg.train.layer
    names = linear_names(lm.hf_model)
    for variant in cfg.variants:  # settings errors before any compute
        cfg.settings(variant).check(lm.n_layers, names)
    if cfg.qlora and not torch.cuda.is_available():
        raise InputError("QLoRA loads the base in 4 bits with bitsandbytes and needs a CUDA GPU; none is available here "
                         "(use plain LoRA on CPU: qlora: false)", field="qlora")

    def stage(name: str, fp_parts: Any, compute: Any, files: Callable[[], Sequence[str]] = tuple,
              provenance: Sequence[str] = ()) -> StageRecord:
        """Reuse the stage's record (and the files it wrote, checked by hash) or compute it; ``files()`` lists what the
        computation wrote, relative to the run directory; ``provenance``, the output's keys that say how it ran (see
        :meth:`StageStore.save`)."""
        fp = fingerprint(name, key, fp_parts)
        found = store.load(name, fp)
        if found is not None:
            log.info("stage %s: reused", name)
            return found
        t0 = time.perf_counter()
        with in_stage(name):
            output, tensors = compute()
        return store.save(name, fp, output, tensors, seconds=time.perf_counter() - t0, files=files(), provenance=provenance)

    found = {split: _found(cfg, split) for split in ("train", "val")}
    content = sha256_json([[e.prompt, e.response, e.mix, e.id, e.style is not None] for split in ("train", "val") for e in found[split]])
    data = stage("data", [cfg.data.model_dump(mode="json") | {"seed": cfg.train.seed}, content],
                 lambda: ({split: _distil(lm, cfg, found[split], progress) for split in ("train", "val")}, {}))
    axes_rec = stage("axes", ["axes/4", content, *start_settings(cfg, layer)],
                     lambda: ({"layer": layer}, starting_values(lm, cfg, layer, progress)))
    trained: dict[str, StageRecord] = {}
    for variant in cfg.variants:
        def compute_train(variant: str = variant) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
            result = _train_variant(lm, cfg, variant, data.output["train"], circuit_start(axes_rec.tensors), out, progress)
            return result.summary(), {}
        reads = [data.content] + ([axes_rec.content] if cfg.settings(variant).module else [])  # LoRA alone has no circuit start
        trained[variant] = stage(f"train_{variant}", [*settings_key(cfg.settings(variant)), *reads], compute_train,
                                 files=partial(variant_files, out, variant), provenance=("train_seconds", "resumed_from_step"))
    training = {variant: rec.output for variant, rec in trained.items()}
    atomic_write_json(out / "training.json", {"config": cfg.to_dict(), "model": lm.name, "variants": training,
                                              "examples": {"train": len(data.output["train"]), "val": len(data.output["val"])}})
    tests, mc_items = _test_sets(cfg.compare.limit), load_honest_mc("test")[:cfg.compare.limit]
    heldout = [line for line in load_corpus_text(None, heldout=True).splitlines() if line.strip()]
    test_content = sha256_json([[tests.get(label).texts for label in ("harmful", "harmless", "lookalike")],
                                [[m.question, m.mc1_choices, m.mc2_choices, m.mc2_labels] for m in mc_items], heldout])
    rows: list[CompareRow] = []
    base_first = None
    judge = None if cfg.compare.judge is None else Judge(cfg.compare.judge.judge_config())

    def measure(name: str, model: LoadedModel, iv: Intervention | None, fp_extra: Any) -> CompareRow:
        def compute() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
            row = evaluate_row(name, model, tests, mc_items, heldout, intervention=iv, base_first_logits=base_first,
                               max_new_tokens=cfg.compare.max_new_tokens, batch_size=cfg.compare.batch_size, progress=progress)
            return _row_record(row)
        reads = cfg.compare.model_dump(mode="json", include={"max_new_tokens", "batch_size", "limit"})
        rec = stage(f"eval_{name}", [reads, test_content, fp_extra], compute, provenance=("throughput_ratio",))
        row = _row_from_record(rec, mc_items)
        if judge is not None:  # its own stage: a judge failure loses no evaluation, and a rerun asks it nothing twice
            target = {"base_url": judge.config.base_url, "model": judge.config.model}  # never the key
            ratings = stage(f"judge_{name}", ["judge/1", target, rec.content],
                            lambda: (judge_ratings(judge, tests, row.generations, progress=progress), {}))
            row.ratings = {label: RatingSummary.of(r) for label, r in ratings.output.items()}
        if name in training:
            row.trainable_params, row.trainable_pct = training[name]["trainable_params"], training[name]["trainable_pct"]
            row.train_seconds = training[name]["train_seconds"]
        return row

    base = measure("base", lm, None, None)
    base_first = base.first_logits
    rows.append(base)
    if cfg.compare.addition:
        vector = axes_rec.tensors["harmful_minus_harmless"]  # computed once, in the axes stage
        rows.append(measure("addition", lm, ActivationAddition(vector, (layer,), 1.0, "resid_post"),
                            [layer, tensors_digest({"vector": vector})]))  # not the circuit's start, which it never reads
    conscience = _conscience(lm, cfg.compare.conscience, progress)
    if conscience is not None:
        rows.append(measure("conscience", lm, conscience, cfg.compare.conscience))
    circuits: dict[str, AlignmentCircuit] = {}
    for variant in cfg.variants:
        iv: AlignmentCircuit | None = None
        if variant != "lora":
            iv = load_circuit(out / ("mac.safetensors" if variant == "module" else f"{variant}/mac.safetensors"))
            circuits[variant] = iv
        model = lm if variant == "module" else load_model(str(out / MERGED[variant]), dtype=cfg.dtype, device=cfg.device)
        rows.append(measure(variant, model, iv, trained[variant].content))  # the training's content, not its timing
    return MacRun(out, cfg, lm.name, training, rows, time.perf_counter() - start, circuits, lm)


def write_comparison(run: MacRun) -> list[Path]:
    """``comparison.json`` and ``comparison.csv`` of a run."""
    json_path, csv_path = run.out_dir / "comparison.json", run.out_dir / "comparison.csv"
    atomic_write_json(json_path, {"model": run.model, "rows": [r.to_json() for r in run.rows],
                                  "notes": ["refusal, MC and KL on test splits that training and selection never saw",
                                            "KL: first-token KL(base || row) on the harmless test prompts",
                                            "throughput_ratio: steered generate tokens/s over the same model with no hooks"]})
    write_csv(csv_path, [r.csv_row() for r in run.rows])
    return [json_path, csv_path]

