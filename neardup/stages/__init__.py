"""The pipeline's stage runners, one per stage of ``dvc.yaml`` (``python -m neardup.stages.<name>``).

Each is thin: it reads its ``params.yaml`` group and its input files, calls its stage's package
(``neardup/<name>``) and writes its outputs; a user error ends it with one line and exit code 2.
They live in the package so that a project made with ``neardup init`` runs the installed pipeline.
"""
