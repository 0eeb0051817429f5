"""Reading the model: direct logit attribution, logit lens and tuned lens.

Import the submodules directly (``alignscope.lenses.dla``, ``.logit_lens``, ``.tuned_lens``,
``.train_loop``, ``.lens_eval``); nothing heavy happens here.
"""
