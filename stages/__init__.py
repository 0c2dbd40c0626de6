"""The pipeline's stage runners, one per stage of ``dvc.yaml`` (``python -m stages.<name>``).

Each only parses its options and calls its stage's ``run(params, layout, ...)`` (:mod:`neardup.stage`
lists them), which lives in the stage's own package under ``neardup/``. A ``neardup init`` project
runs the same functions from the installed package (``neardup stage <name>``), so nothing is copied
into a user's project and nothing drifts on upgrade.
"""
