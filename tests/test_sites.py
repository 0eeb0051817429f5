from __future__ import annotations

import pytest

from alignscope.errors import SiteError
from alignscope.sites import COMPONENTS, Site, available_components, layer_sites, parse_component, parse_site


def test_hook_names_cover_every_component() -> None:
    expected = {
        "resid_pre": "blocks.3.hook_resid_pre",
        "resid_mid": "blocks.3.hook_resid_mid",
        "resid_post": "blocks.3.hook_resid_post",
        "attn_out": "blocks.3.hook_attn_out",
        "mlp_out": "blocks.3.hook_mlp_out",
        "head": "blocks.3.attn.hook_z",
        "pattern": "blocks.3.attn.hook_pattern",
    }
    assert set(expected) == set(COMPONENTS)
    for comp, name in expected.items():
        assert Site(3, comp).hook_name == name


def test_unknown_component_lists_valid_ones() -> None:
    with pytest.raises(SiteError) as err:
        Site(0, "resid")
    for comp in COMPONENTS:
        assert comp in str(err.value)


def test_head_index_only_on_head_components() -> None:
    with pytest.raises(SiteError, match="head index only applies"):
        Site(0, "resid_post", head=1)
    assert Site(0, "head", head=2).head == 2


def test_out_of_range_layer_and_head(tiny_lm) -> None:
    lm = tiny_lm("llama")
    with pytest.raises(SiteError, match=r"valid layers are 0\.\.1"):
        Site(2, "resid_post").validate(lm)
    with pytest.raises(SiteError, match=r"valid heads are 0\.\.3"):
        Site(0, "head", head=4).validate(lm)
    assert Site(1, "head", head=3).validate(lm).head == 3


def test_every_hook_exists_on_llama(tiny_lm) -> None:
    lm = tiny_lm("llama")
    assert available_components(lm) == list(COMPONENTS)
    for comp in COMPONENTS:
        for site in layer_sites(lm, comp):
            assert site.hook_name in lm.bridge.hook_dict


def test_parallel_attention_has_no_resid_mid(tiny_lm) -> None:
    lm = tiny_lm("falcon")
    with pytest.raises(SiteError) as err:
        Site(0, "resid_mid").validate(lm)
    assert "resid_post" in str(err.value) and "resid_mid" not in str(err.value).split("valid here:")[1]


def test_parse_site_round_trip() -> None:
    assert parse_site("resid_post@14") == Site(14, "resid_post")
    assert parse_site("head@3.h5") == Site(3, "head", 5)
    assert str(Site(3, "head", 5)) == "head@3.h5"
    with pytest.raises(SiteError, match="component@layer"):
        parse_site("resid_post")
    with pytest.raises(SiteError, match="integers"):
        parse_site("resid_post@x")


def test_parse_component_accepts_exactly_the_allowed_names() -> None:
    names = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head", "pattern"]
    assert [parse_component(n) for n in names] == names
    assert parse_component("head", ("head", "mlp_out")) == "head"
    for bad in ("resid", "Resid_pre", " head", "head ", ""):
        with pytest.raises(SiteError, match="valid components: resid_pre, resid_mid, resid_post, attn_out, mlp_out, head, pattern$"):
            parse_component(bad)
    with pytest.raises(SiteError, match=r"unknown component 'resid_pre'; valid components: head, mlp_out$"):
        parse_component("resid_pre", ("head", "mlp_out"))
    with pytest.raises(SiteError, match="unknown component 'bogus'"):
        parse_component("bogus", ("bogus",))
