"""Shared numpydoc parameter text, filled into docstrings with :func:`doc_params`."""

from __future__ import annotations

from inspect import cleandoc

doc_adata = """\
adata
    Annotated data matrix (cells x genes), or a :class:`~mudata.MuData`."""

doc_use_rep = """\
use_rep
    Key in ``adata.obsm`` holding the cell embedding (e.g. ``"X_scVI"``, ``"X_pca"``).
    For a MuData, ``"rna:X_scVI"`` reads the ``rna`` modality's obsm."""

doc_key = """\
key
    Key of the SAE run: activations in ``adata.obsm[f"X_{key}"]``, the rest in
    ``adata.uns[key]``."""

doc_sae_key = """\
sae_key
    Key of the SAE run read: activations in ``adata.obsm[f"X_{sae_key}"]``, the rest in
    ``adata.uns[sae_key]`` (the ``key_added`` of :func:`sclens.tl.fit_sae`)."""

doc_annotation_key = """\
annotation_key
    Key of the annotation read: ``adata.uns[annotation_key]`` (the ``key_added`` of
    :func:`sclens.tl.annotate_features`)."""

doc_space_key = """\
space_key
    Key of the space in ``adata.uns[annotation_key]`` (the ``key_added`` of :func:`sclens.tl.feature_space`)."""

doc_features = """\
features
    One feature number or a sequence of them."""

doc_key_added = """\
key_added
    Key under which results are stored (see Returns)."""

doc_random_state = """\
random_state
    Seed for every random choice; the same seed and data give identical results."""

doc_copy = """\
copy
    Return a modified copy instead of writing to ``adata``."""

doc_n_jobs = """\
n_jobs
    Number of parallel workers; ``None`` uses ``sclens.settings.n_jobs``, ``-1`` all cores."""

doc_layer = """\
layer
    Layer of ``adata`` with raw integer counts; ``None`` uses ``adata.X``."""

doc_plot = """\
ax
    Matplotlib axes to draw into; a new figure is made when ``None``.
show
    Show the figure (``plt.show()``). ``None``: show only a figure the plot made itself (``ax`` not
    given) when matplotlib is interactive; a plot drawn into your ``ax`` never shows or closes it.
    Ignored when ``return_fig`` is ``True``.
save
    Path to write the figure to (any format matplotlib knows, e.g. ``"fig.pdf"``); ``None``: not saved.
return_fig
    Return the :class:`~matplotlib.figure.Figure` instead of ``None``."""

_DOCS = {k[4:]: v for k, v in dict(globals()).items() if k.startswith("doc_")}


def doc_params(**extra: str):
    """Fill ``{adata}``, ``{use_rep}``, ... placeholders of a docstring."""

    def decorator(obj):
        if obj.__doc__ is not None:
            obj.__doc__ = cleandoc(obj.__doc__).format_map({**_DOCS, **extra})
        return obj

    return decorator
