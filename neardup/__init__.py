"""neardup: find duplicate and near-duplicate images in ML datasets.

The package holds the logic of the DVC pipeline (fetch -> embed -> cluster -> evaluate -> render);
``stages/*.py`` are thin runners around it.
"""
