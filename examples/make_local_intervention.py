"""Make the intervention that turns the embedded model into its 'aligned' partner in examples/registry_local.yaml.

The vector is the harmful-minus-harmless difference in means of the built-in train prompts
(last post-instruction token, chat-formatted) at ``resid_pre`` of layer 14, added at that layer
to every position with coefficient 4. Deterministic (no sampling); about 20 s on 2 CPU cores:

    python examples/make_local_intervention.py            # writes examples/interventions/smollm2_l14_addition.safetensors

``alignscope deltas --base default --aligned-intervention THAT_FILE`` (or ``alignscope compare
examples/registry_local.yaml``) then shows the delta at layers >= 14 and none before.
"""

from __future__ import annotations

from pathlib import Path

from alignscope.data import load_builtin
from alignscope.models import load_model
from alignscope.steering.directions import diff_in_means
from alignscope.steering.intervention_io import save_intervention
from alignscope.steering.interventions import ActivationAddition

LAYER = 14
COEFFICIENT = 4.0
OUT = Path(__file__).resolve().parent / "interventions" / "smollm2_l14_addition.safetensors"


def main() -> None:
    lm = load_model("default", device="cpu", dtype="float32")
    md = diff_in_means(lm, load_builtin("harmful", split="train"), load_builtin("harmless", split="train"),
                       component="resid_pre", positions="last", layers=[LAYER], chat=True)
    vector = md.direction(LAYER, -1)
    iv = ActivationAddition(vector, (LAYER,), coefficient=COEFFICIENT, component="resid_pre")
    print(save_intervention(OUT, iv, model=lm.name), f"norm {float(vector.norm()):.3f}")


if __name__ == "__main__":
    main()
