"""embed: one model at one image size over every image of the manifest."""
import pandas as pd

from neardup.embedding import embed_manifest
from neardup.params import load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--model", {}), ("--size", {"type": int}), ("--manifest", {}), ("--out", {}))
    params = load_params("embed")
    manifest = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
    result = embed_manifest(manifest, model_name=args.model, size=args.size, weights=params.weights,
                            batch_size=params.batch_size, pooling=params.pooling, grayscale=params.grayscale)
    result.save(args.out)


if __name__ == "__main__":
    run_stage(main)
