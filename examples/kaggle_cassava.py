# %% [markdown]
# # Duplicates in a Kaggle dataset, in a notebook
#
# Cassava Leaf Disease (or any folder of images with a Kaggle-style `image_id,label` CSV): find the
# duplicate and near-duplicate images, see them, and write a cleaned labels CSV and leakage-safe folds.
# This file is a notebook in the "percent" format: open it in Jupyter / VS Code / Kaggle, or run it as a
# script (the tests run it on the demo data).
#
# On Kaggle or Colab, install the package first (a clone of the repository, or its wheel):
#
# ```
# %pip install -q /kaggle/input/neardup-wheel/neardup-*.whl     # or: %pip install -q -e /path/to/clone
# ```
#
# The GPU of the session is used automatically when TensorFlow sees one (the log says
# "embedding on N GPU(s)").

# %%
import os
from pathlib import Path

import neardup

# Cassava on Kaggle: /kaggle/input/cassava-leaf-disease-classification/{train_images,train.csv}
IMAGES = Path(os.environ.get("NEARDUP_IMAGES", "/kaggle/input/cassava-leaf-disease-classification/train_images"))
LABELS = Path(os.environ.get("NEARDUP_LABELS", "/kaggle/input/cassava-leaf-disease-classification/train.csv"))
OUT = Path(os.environ.get("NEARDUP_OUT", "neardup_out"))

# %% [markdown]
# One call: the pipeline's own steps and defaults (EfficientNet-Lite0, whitening, the dHash mix,
# planted copies to measure recall on your own images, the eps rule that never swallows the dataset).

# %%
result = neardup.find_duplicates(IMAGES, labels=LABELS, out=OUT)
result

# %% [markdown]
# Why this eps: the rule, then every eps of the sweep judged.

# %%
print(result.reason.splitlines()[0])
print({k: result.metrics[k] for k in ("eps", "n_groups", "n_pairs", "planted_recall", "n_label_conflicts")})

# %% [markdown]
# The groups (one row per image) and the closest pairs; label conflicts are the same picture with two labels.

# %%
print(result.groups.head(10).to_string())
print(result.pairs.head(5).to_string())
result.show(4)  # thumbnails, inline in a notebook

# %% [markdown]
# A cleaned labels CSV (one image kept per duplicate group) and leakage-safe folds: every duplicate
# group inside one fold, stratified by label. `OUT` has a project's layout: the lists and the folds
# are also in `OUT/reports/` (keep.csv, remove.csv, folds.csv).

# %%
import pandas as pd

labels = pd.read_csv(LABELS, dtype=str)
removed = set(result.remove["id"])
cleaned = labels[~labels["image_id"].isin(removed)]
cleaned.to_csv(OUT / "train_clean.csv", index=False)
folds = result.folds()  # act.n_splits folds (5); result.folds(n_splits=10) for others
print(f"{len(labels)} rows -> {len(cleaned)} after removing {len(removed)} duplicates; folds: "
      f"{folds['fold'].value_counts().sort_index().tolist()}")

# %% [markdown]
# The self-contained HTML report, with a review view: mark pairs as duplicate / different / unsure,
# export the verdicts, and merge them into a DVC project with `neardup review --import FILE`.

# %%
print(result.report())  # OUT/reports/index.html
