from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from alignscope.errors import InputError
from alignscope.evals.judge import JudgeConfig
from alignscope.pipeline.config import InterveneConfig, JudgeSection, RunConfig, SelectConfig, _Section, embeds, load_config, parse_config
from alignscope.recipes.conscience import ConscienceConfig
from alignscope.steering.selection import SelectionConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "run_config.yaml"


def test_defaults_and_example_agree() -> None:
    assert load_config(None) == RunConfig()
    assert load_config(EXAMPLE) == RunConfig()  # the example documents every default


@pytest.mark.parametrize(("text", "field", "hint"), [
    ("evaluate:\n  max_new_tokens: 0\n", "evaluate.max_new_tokens", "greater than or equal to 1"),
    ("extract:\n  component: attn_out\n", "extract.component", "'resid_pre', 'resid_mid' or 'resid_post'"),
    ("intervene:\n  kind: magic\n", "intervene.kind", "'conditional', 'addition' or 'ablation'"),
    ("intervene:\n  coefficent: [1]\n", "intervene.coefficent", "coefficients"),
    ("modle: default\n", "modle", "model, dtype"),
    ("evaluate:\n  compare: [steer]\n", "evaluate.compare.0", "'addition' or 'ablation'"),
    ("evaluate:\n  judge: {base_url: http://x, model: m, api_key: s}\n", "evaluate.judge.api_key", "api_key_env"),
    ("data:\n  n_train: lots\n", "data.n_train", "valid integer"),
    # fields that come from the embedded library configs
    ("select:\n  kl_threshold: 0\n", "select.kl_threshold", "greater than 0"),
    ("select:\n  induce_relative_to: zero\n", "select.induce_relative_to", "'harmful', 'harmless' or 'absolute'"),
    ("select:\n  chat: false\n", "select.chat", "prune_last_fraction"),  # chat is the run's, not the section's
    ("intervene:\n  max_fpr: 1\n", "intervene.max_fpr", "less than 1"),
    ("intervene:\n  pooling: middle\n", "intervene.pooling", "'span_post', 'span' or 'tail'"),
    ("intervene:\n  probe_layer_sets: [[1], [a]]\n", "intervene.probe_layer_sets.1.0", "valid integer"),
    ("intervene:\n  seed: 3\n", "intervene.seed", "hard_negative_weights"),  # seed is the run's
    ("evaluate:\n  judge: {base_url: http://x, model: m, timeout: 0}\n", "evaluate.judge.timeout", "greater than 0"),
    ("evaluate:\n  judge: {base_url: http://x}\n", "evaluate.judge.model", "Field required"),
])
def test_errors_name_file_field_and_allowed_values(tmp_path: Path, text: str, field: str, hint: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and f"field '{field}'" in msg and hint in msg, msg


def test_yaml_syntax_and_shape_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model: default\nevaluate: [1, 2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken.yaml, line \d+: invalid YAML"):
        load_config(path)
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(InputError, match="mapping of sections"):
        load_config(path)
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    assert load_config(_write(tmp_path / "empty.yaml", "")) == RunConfig()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_sections_take_every_field_of_the_library_configs() -> None:
    assert set(SelectConfig.model_fields) == _names(SelectionConfig) - {"max_layer_frac", "chat"} | {
        "prune_last_fraction", "positions", "layer_stride", "n_harmful", "n_harmless"}
    assert set(InterveneConfig.model_fields) == _names(ConscienceConfig) - {"seed"} | {"kind"}
    assert set(JudgeSection.model_fields) == _names(JudgeConfig)


def test_sections_build_the_library_configs() -> None:
    cfg = parse_config({"select": {"kl_threshold": 0.5, "prune_last_fraction": 0.25, "induce_relative_to": "absolute"},
                        "intervene": {"coefficients": [1, 2], "probe_layer_sets": [[1], [2, 3]], "l2": 0.5, "batch_size": 4},
                        "evaluate": {"judge": {"base_url": "http://x", "model": "m", "backoff": 0.0}}})
    assert cfg.select.selection(chat=False) == SelectionConfig(kl_threshold=0.5, max_layer_frac=0.75, induce_relative_to="absolute",
                                                               chat=False)
    assert cfg.intervene.conscience(seed=7) == ConscienceConfig(coefficients=(1.0, 2.0), probe_layer_sets=((1,), (2, 3)), l2=0.5,
                                                                batch_size=4, seed=7)
    assert RunConfig().intervene.conscience(seed=0) == ConscienceConfig()  # null everywhere: the search's own defaults
    assert cfg.evaluate.judge is not None and cfg.evaluate.judge.judge_config() == JudgeConfig("http://x", "m", backoff=0.0)
    assert cfg.to_dict()["intervene"]["probe_layer_sets"] == [[1], [2, 3]]


@dataclasses.dataclass(frozen=True)
class _Lib:
    needed: str
    count: Annotated[int, Field(ge=1)] = 2
    owned: bool = True


def test_a_library_field_is_a_key_without_a_pipeline_edit() -> None:
    @embeds(_Lib, exclude=("owned",))
    class Section(_Section):
        extra: int = 0

    sec = Section.model_validate({"needed": "x", "count": 5})
    assert (sec.extra, sec.library_kwargs()) == (0, {"needed": "x", "count": 5})
    for bad, loc in (({"needed": "x", "count": 0}, ("count",)), ({}, ("needed",)), ({"needed": "x", "owned": False}, ("owned",))):
        with pytest.raises(ValueError) as info:
            Section.model_validate(bad)
        assert info.value.errors()[0]["loc"] == loc  # type: ignore[attr-defined]

    @embeds(_Lib, nullable=True)
    class Nullable(_Section):
        pass

    assert Nullable().library_kwargs() == {} and Nullable(count=3).library_kwargs() == {"count": 3}
    assert set(Nullable.model_fields) == {"needed", "count", "owned"} and Nullable().model_dump()["needed"] is None
