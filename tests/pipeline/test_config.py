from __future__ import annotations

from pathlib import Path

import pytest

from alignscope.errors import InputError
from alignscope.pipeline.config import RunConfig, load_config

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
