"""Training the alignment circuit: response-only loss, frozen base, exact resume, LoRA parameter counts."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from alignscope.errors import InputError
from alignscope.models.chat import encode_one
from alignscope.models.registry import decoder_layers
from alignscope.recipes import mac_train
from alignscope.recipes.mac_train import IGNORE, LoraSettings, TrainSettings, encode_example, train
from alignscope.steering.circuit import PARAMETERS, CircuitNet
from tests.reference import load_plain

EXAMPLES = [("Tell me a joke", "Why did the chicken cross the road"), ("How do I pick a lock", "I can't help with that"),
            ("Name a colour", "Blue"), ("Say hello", "Hello there, friend"), ("Count to three", "One two three")]


@pytest.fixture()
def tiny(tiny_dir):
    path = tiny_dir("llama")
    return path, AutoTokenizer.from_pretrained(path)


def test_labels_cover_the_response_only(tiny) -> None:
    _, tok = tiny
    enc = encode_example(tok, "Say hello", "Hello there", chat=True, max_length=200)
    prompt_ids, _ = encode_one(tok, "Say hello", chat=True)
    response = tok("Hello there", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc.ids == prompt_ids + response
    assert enc.labels == [IGNORE] * len(prompt_ids) + response
    short = encode_example(tok, "Say hello", "Hello there", chat=True, max_length=len(response) + 2)
    assert short.ids == prompt_ids[-2:] + response and len(short.ids) == len(response) + 2


def test_first_loss_is_hf_masked_loss_on_the_base(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    model = load_plain(path)
    settings = TrainSettings(layer=1, batch_size=len(EXAMPLES), epochs=1, warmup_steps=1)
    result = train(model, tok, EXAMPLES, settings, out_dir=tmp_path)
    encoded = [encode_example(tok, p, r, chat=True, max_length=96) for p, r in EXAMPLES]
    total, n = 0.0, 0
    reference = load_plain(path)
    for e in encoded:  # one unpadded example at a time, summed by hand
        logits = reference(input_ids=torch.tensor([e.ids])).logits[0].double()
        for t in range(1, len(e.ids)):
            if e.labels[t] != IGNORE:
                total -= float(torch.log_softmax(logits[t - 1], -1)[e.labels[t]])
                n += 1
    assert result.losses[0] == pytest.approx(total / n, rel=1e-5)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.equal(p, q), f"base weight {name} changed"


def test_training_lowers_the_loss_and_moves_the_circuit(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    result = train(load_plain(path), tok, EXAMPLES, TrainSettings(layer=1, batch_size=5, epochs=30, lr=3e-2, warmup_steps=2),
                   out_dir=tmp_path)
    assert result.steps == 30
    assert max(result.losses[-5:]) < min(result.losses[:5]) - 0.05  # a random tiny model moves little, but steadily
    assert result.circuit is not None and float(result.circuit.net.nudge.abs().sum()) > 0


def test_frozen_parameters_keep_their_start_and_are_not_counted(tiny, tmp_path: Path) -> None:
    """Frozen circuit tensors end exactly at their starting values, the others move, and only the others are counted
    (and checkpointed: a resumed run ends where an uninterrupted one does)."""
    path, tok = tiny
    d_model = load_plain(path).config.hidden_size
    start = {name: p.detach() + 0.05 for name, p in CircuitNet(d_model, 3, 16).named_parameters() if name != "nudge"}
    frozen = ("axes", "axis_bias", "query", "key")
    settings = TrainSettings(layer=1, batch_size=2, epochs=3, checkpoint_every=2, lr=3e-2, warmup_steps=1, freeze=frozen)
    full = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path / "a", init=start)
    assert full.circuit is not None
    net = dict(full.circuit.net.named_parameters())
    for name in frozen:
        assert torch.equal(net[name], start[name]), name
    for name in ("decide", "decide_bias", "nudge"):
        assert not torch.equal(net[name], start.get(name, torch.zeros_like(net[name]))), name
    assert full.trainable_params == sum(net[n].numel() for n in PARAMETERS if n not in frozen)
    train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path / "b", init=start, max_steps=3)
    again = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path / "b", init=start)
    assert again.resumed_from == 3 and again.losses == full.losses
    assert again.circuit is not None
    assert all(torch.equal(p, net[n]) for n, p in again.circuit.net.named_parameters())


def test_killed_run_resumes_bit_for_bit(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    settings = TrainSettings(layer=1, batch_size=2, epochs=3, checkpoint_every=2, lr=1e-2, lora=LoraSettings(r=2))
    full = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path / "a")
    part = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path / "b", max_steps=5)
    assert part.steps == 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path / "b")
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]  # the schedule's fast-forward is not torch's misuse
    assert again.resumed_from == 5 and again.steps == full.steps == 9
    assert again.losses == full.losses
    assert full.circuit is not None and again.circuit is not None
    for (name, p), (_, q) in zip(full.circuit.net.named_parameters(), again.circuit.net.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    lora_full = {k: v for k, v in full.model.state_dict().items() if "lora_" in k}
    lora_again = {k: v for k, v in again.model.state_dict().items() if "lora_" in k}
    assert lora_full.keys() == lora_again.keys() and all(torch.equal(lora_full[k], lora_again[k]) for k in lora_full)


def test_lora_only_counts_and_freezes(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    model = load_plain(path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = model.config
    result = train(model, tok, EXAMPLES, TrainSettings(module=False, lora=LoraSettings(r=4, target_modules=("q_proj", "v_proj")),
                                                       batch_size=5, epochs=2), out_dir=tmp_path)
    assert result.circuit is None
    head = cfg.hidden_size // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * head
    per_layer = 4 * (cfg.hidden_size + cfg.num_attention_heads * head) + 4 * (cfg.hidden_size + kv)
    assert result.trainable_params == cfg.num_hidden_layers * per_layer
    assert result.total_params == sum(v.numel() for k, v in before.items() if k != "lm_head.weight" or not cfg.tie_word_embeddings)
    base = result.model.get_base_model()
    for k, v in before.items():
        key = k if k in base.state_dict() else k.replace(".weight", ".base_layer.weight")
        assert torch.equal(base.state_dict()[key], v), k


@pytest.mark.parametrize(("settings", "field"), [
    (TrainSettings(axes=()), "axes"), (TrainSettings(layer=99), "layer"), (TrainSettings(gate="step"), "gate"),
    (TrainSettings(lora=LoraSettings(target_modules=("qkv_fused",))), "lora.target_modules"),
    (TrainSettings(module=False), "module"), (TrainSettings(batch_size=0), "batch_size"),
    (TrainSettings(keep_loss="mse"), "keep_loss"), (TrainSettings(kl_weight=-1.0), "kl_weight"),
    (TrainSettings(freeze=("gates",)), "freeze"), (TrainSettings(module=False, lora=LoraSettings(), freeze=("axes",)), "freeze"),
    (TrainSettings(freeze=PARAMETERS), "freeze"), (TrainSettings(scope="prompt"), "scope"),
    (TrainSettings(hold=True), "hold"), (TrainSettings(module=False, lora=LoraSettings(), scope="response", hold=True), "hold"),
])
def test_bad_settings_name_the_field(tiny, tmp_path: Path, settings: TrainSettings, field: str) -> None:
    path, tok = tiny
    with pytest.raises(InputError, match=f"field '{field}'"):
        train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path)


def test_resumed_training_seconds_add_up_across_processes(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock that moves 10 s per optimizer step: the resumed run reports all 9 steps' time, not its own 4 steps'."""
    path, tok = tiny
    now = [1000.0]

    def tick(step: int, loss: float) -> None:
        now[0] += 10.0

    monkeypatch.setattr(mac_train, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    settings = TrainSettings(layer=1, batch_size=2, epochs=3, checkpoint_every=2, lr=1e-2)
    part = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, max_steps=5, on_step=tick)
    assert part.steps == 5 and part.seconds == 50.0
    now[0] += 3600.0  # the process was killed; an hour passes before the rerun
    again = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, on_step=tick)
    assert again.resumed_from == 5 and again.steps == 9 and again.seconds == 90.0
    assert again.summary()["train_seconds"] == 90.0
    progress = json.loads((tmp_path / "checkpoint" / "progress.json").read_text(encoding="utf-8"))
    assert progress["step"] == 9 and progress["seconds"] == 90.0


KEEP = [True, False, True, False, True]  # the jokes, colours and counting keep the model's own behaviour


def _by_hand_loss(path: Path, tok, circuit, lora_model=None) -> float:
    """The kept examples' summed KL(unsteered || steered) plus the others' cross-entropy, per response token, one
    unpadded example at a time on plain HF models (the circuit attached with attach_to, LoRA through its own model)."""
    plain = load_plain(path)
    steered = lora_model if lora_model is not None else load_plain(path)
    handle = circuit.attach_to(steered.get_base_model() if lora_model is not None else steered) if circuit is not None else None
    total, n = 0.0, 0
    with torch.no_grad():
        for (p, r), keep in zip(EXAMPLES, KEEP, strict=True):
            e = encode_example(tok, p, r, chat=True, max_length=96)
            ids = torch.tensor([e.ids])
            log_q = torch.log_softmax(steered(input_ids=ids).logits[0].double(), -1)
            log_p = torch.log_softmax(plain(input_ids=ids).logits[0].double(), -1)
            for t in range(1, len(e.ids)):
                if e.labels[t] == IGNORE:
                    continue
                n += 1
                total += float((log_p[t - 1].exp() * (log_p[t - 1] - log_q[t - 1])).sum()) if keep else -float(log_q[t - 1, e.labels[t]])
    if handle is not None:
        handle.remove()
    return total / n


def test_kept_examples_score_kl_from_the_unsteered_model(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    settings = TrainSettings(layer=1, batch_size=len(EXAMPLES), epochs=3, warmup_steps=1, lr=5e-2)
    first = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, max_steps=1)
    assert first.circuit is not None and float(first.circuit.net.nudge.abs().sum()) > 0
    expected = _by_hand_loss(path, tok, first.circuit)  # step 2 scores the whole set with the circuit of step 1
    second = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, max_steps=2)
    assert second.resumed_from == 1 and second.losses[1] == pytest.approx(expected, rel=1e-4)


def test_kept_examples_under_lora_compare_with_the_adapter_disabled(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    settings = TrainSettings(module=False, lora=LoraSettings(r=2, lr=5e-2), batch_size=len(EXAMPLES), epochs=3, warmup_steps=1)
    first = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, max_steps=1)
    expected = _by_hand_loss(path, tok, None, lora_model=first.model)
    second = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, max_steps=2)
    assert second.losses[1] == pytest.approx(expected, rel=1e-4)


def test_an_unchanged_model_has_zero_kept_loss(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    keep_all = train(load_plain(path), tok, EXAMPLES, TrainSettings(layer=1, batch_size=5, epochs=2), out_dir=tmp_path / "kl",
                     keep=[True] * len(EXAMPLES))
    assert keep_all.losses[0] == 0.0  # the fresh circuit is the identity: nothing to learn
    assert keep_all.losses[1] < 1e-6  # (Adam scales the rounding-level gradient up to a step, so not exactly 0)
    ce = train(load_plain(path), tok, EXAMPLES, TrainSettings(layer=1, batch_size=5, epochs=1, keep_loss="ce"),
               out_dir=tmp_path / "ce", keep=[True] * len(EXAMPLES))
    assert ce.losses[0] > 1.0  # the old loss: cross-entropy on the self-distilled answer


def test_keep_flags_must_match_the_examples(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    with pytest.raises(InputError, match="field 'keep'"):
        train(load_plain(path), tok, EXAMPLES, TrainSettings(layer=1), out_dir=tmp_path, keep=[True])


REFUSE = [False, True, False, False, False]  # the lock-picking request should refuse


def test_gate_supervision_adds_the_gates_cross_entropy(tiny, tmp_path: Path) -> None:
    """Step 2's loss = the token losses + gate_weight * BCE(harmless gate, should-refuse) at every scored position, the
    gates read by hand from the circuit attached to a plain HF model, one unpadded example at a time."""
    path, tok = tiny
    settings = TrainSettings(layer=1, batch_size=len(EXAMPLES), epochs=3, warmup_steps=1, lr=5e-2, gate_weight=0.7)
    first = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, refuse=REFUSE, max_steps=1)
    assert first.circuit is not None
    plain = load_plain(path)
    handle = first.circuit.attach_to(plain, record=True)
    bce, n = 0.0, 0
    with torch.no_grad():
        for (p, r), target in zip(EXAMPLES, REFUSE, strict=True):
            e = encode_example(tok, p, r, chat=True, max_length=96)
            plain(input_ids=torch.tensor([e.ids]))
            gate = handle.trace()["gates"][0, :, 1].double()  # axis 1: harmless
            for t in range(1, len(e.ids)):
                if e.labels[t] != IGNORE:
                    n += 1
                    bce -= float(torch.log(gate[t - 1] if target else 1 - gate[t - 1]))
    handle.remove()
    expected = _by_hand_loss(path, tok, first.circuit) + 0.7 * bce / n
    second = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, refuse=REFUSE, max_steps=2)
    assert second.resumed_from == 1 and second.losses[1] == pytest.approx(expected, rel=1e-4)
    without = train(load_plain(path), tok, EXAMPLES, TrainSettings(**{**settings.__dict__, "gate_weight": 0.0}),
                    out_dir=tmp_path / "off", keep=KEEP, max_steps=1)
    assert without.losses[0] < first.losses[0]  # the fresh gates (about 0.12) already cost something on the refusal


@pytest.mark.parametrize(("settings", "refuse", "field"), [
    (TrainSettings(layer=1, gate_weight=1.0), None, "refuse"),
    (TrainSettings(layer=1, gate_weight=1.0), [True], "refuse"),
    (TrainSettings(layer=1, gate_weight=1.0, gate_axis="kind"), REFUSE, "gate_axis"),
    (TrainSettings(layer=1, gate_weight=1.0, gate="tanh"), REFUSE, "gate"),
    (TrainSettings(layer=1, gate_weight=float("nan")), REFUSE, "gate_weight"),
    (TrainSettings(module=False, lora=LoraSettings(), gate_weight=1.0), REFUSE, "gate_weight"),
    (TrainSettings(layer=1, gate_weight=1.0, freeze=mac_train.GATE_PARAMETERS), REFUSE, "gate_weight"),
])
def test_bad_gate_supervision_names_the_field(tiny, tmp_path: Path, settings: TrainSettings, refuse, field: str) -> None:
    path, tok = tiny
    with pytest.raises(InputError, match=f"field '{field}'"):
        train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, refuse=refuse)


def _response_loss(path: Path, tok, net: CircuitNet, hold: bool) -> float:
    """The kept examples' KL plus the others' cross-entropy per response token, one unpadded example at a time on plain HF,
    with a hook (no alignscope scope logic) that keeps the circuit's edit only from each example's last prompt token on;
    with ``hold``, the gates after that token are replaced by its gates before the nudge is added by hand."""
    plain, steered = load_plain(path), load_plain(path)
    total, n = 0.0, 0
    with torch.no_grad():
        for (p, r), keep in zip(EXAMPLES, KEEP, strict=True):
            e = encode_example(tok, p, r, chat=True, max_length=96)
            start = e.labels.index(next(x for x in e.labels if x != IGNORE)) - 1

            def hook(_m, _i, out, start=start):
                h = out[0] if isinstance(out, tuple) else out
                gates = net(h, torch.ones(h.shape[:2], dtype=torch.bool)).gates.clone()
                if hold:
                    gates[:, start + 1:] = gates[:, start:start + 1]
                rms = h.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
                new = h.clone()
                new[:, start:] = (h + rms * (gates @ net.nudge))[:, start:]
                return (new, *out[1:]) if isinstance(out, tuple) else new

            handle = decoder_layers(steered)[0].register_forward_hook(hook)  # layer 0: later layers read the prompt's edits
            ids = torch.tensor([e.ids])
            log_q = torch.log_softmax(steered(input_ids=ids).logits[0].double(), -1)
            handle.remove()
            log_p = torch.log_softmax(plain(input_ids=ids).logits[0].double(), -1)
            for t in range(1, len(e.ids)):
                if e.labels[t] != IGNORE:
                    n += 1
                    total += float((log_p[t - 1].exp() * (log_p[t - 1] - log_q[t - 1])).sum()) if keep else -float(log_q[t - 1, e.labels[t]])
    return total / n


@pytest.mark.parametrize("hold", [False, True])
def test_response_scope_trains_on_edits_from_the_prompts_end(tiny, tmp_path: Path, hold: bool) -> None:
    """Under scope "response", step 2's loss equals a by-hand loss on plain HF that keeps the circuit's edit only from
    each example's last prompt token on (:func:`_response_loss`), with the gates held from there under ``hold``."""
    path, tok = tiny
    settings = TrainSettings(layer=0, batch_size=len(EXAMPLES), epochs=3, warmup_steps=1, lr=5e-2, scope="response", hold=hold)
    g = torch.Generator().manual_seed(5)  # a start far from the identity, so that the prompt's edits would matter
    d_model = load_plain(path).config.hidden_size
    init = {k: torch.randn(v.shape, generator=g) * 0.5 for k, v in CircuitNet(d_model, 3, 16).named_parameters()}
    first = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, max_steps=1, init=init)
    assert first.circuit is not None and first.circuit.scope == "response" and first.circuit.hold is hold
    expected = _response_loss(path, tok, first.circuit.net, hold)
    second = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, keep=KEEP, max_steps=2, init=init)
    assert second.resumed_from == 1 and second.losses[1] == pytest.approx(expected, rel=1e-6)
    everywhere = _by_hand_loss(path, tok, dataclasses.replace(first.circuit, scope="all", hold=False))
    # a tiny random model's later layers read earlier positions weakly: the prompt's edits move this loss by about 7e-5,
    # over 30 times the tolerance above, so the test tells the scopes apart
    assert abs(everywhere - expected) > 3e-5
    other = _response_loss(path, tok, first.circuit.net, not hold)
    assert abs(other - expected) > 3e-5, (other, expected)  # and holding the gates or not


def test_a_checkpoint_of_the_other_scope_is_not_resumed(tiny, tmp_path: Path) -> None:
    path, tok = tiny
    settings = TrainSettings(layer=0, batch_size=len(EXAMPLES), epochs=3, warmup_steps=1)
    assert train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, max_steps=1).steps == 1
    again = train(load_plain(path), tok, EXAMPLES, settings, out_dir=tmp_path, max_steps=2)
    assert again.resumed_from == 1  # the same scope resumes
    other = train(load_plain(path), tok, EXAMPLES, dataclasses.replace(settings, scope="response"), out_dir=tmp_path, max_steps=1)
    assert other.resumed_from == 0
    held = train(load_plain(path), tok, EXAMPLES, dataclasses.replace(settings, scope="response", hold=True), out_dir=tmp_path,
                 max_steps=1)
    assert held.resumed_from == 0  # nor one that holds its gates


def test_hold_enters_a_trainings_identity_only_when_set() -> None:
    """Runs and checkpoints from before ``hold`` existed keep their identity; a held training gets another."""
    plain, held = TrainSettings(scope="response"), TrainSettings(scope="response", hold=True)
    assert "hold" not in repr(plain) and mac_train.settings_key(plain) == [repr(plain)]
    assert mac_train.settings_key(held) != mac_train.settings_key(plain)
    assert "hold" not in mac_train.identity(plain) and mac_train.identity(held)["hold"] is True
    assert "scope" not in mac_train.identity(TrainSettings())
