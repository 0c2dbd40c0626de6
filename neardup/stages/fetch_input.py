"""fetch_input: keep the entries of ``fetch.input`` that DVC cannot hash out of DVC's sight.

Runs before every ``dvc repro`` (``always_changed``): FIFOs, devices, sockets, broken symlinks and
unreadable files under ``fetch.input`` are named in a managed block of ``.dvcignore`` before DVC
hashes the folder for the fetch stage (a FIFO would hang it, a broken symlink abort it). The
``--out`` listing (those lines) is a dependency of fetch, so fetch reruns, and lists them as
skipped, whenever they change. An image folder at a URL (``fetch.folder.images: s3://...``), which
DVC cannot hash, gets a line with a digest of its listing instead (:mod:`neardup.fetch.remote`).
First of all it checks every params group (:func:`check_params`).
"""
from pathlib import Path

from neardup.cache import check_cache_dir
from neardup.fetch.guard import guard_input
from neardup.files import is_url, listing_line
from neardup.params import GROUPS, ParamsError, load_params
from neardup.runner import parse_args, run_stage


def check_params() -> None:
    """Every group of params.yaml, before any other stage runs: a bad value stops the run here, in one
    line naming it, before hours of work, and before a value dvc.yaml writes into a command
    (``embed.models``, ``embed.sizes``, ``hash.methods``, ``cluster.hash``) reaches a shell
    (:func:`neardup.params.check_name`). ``cache.dir`` must be a folder this user can write."""
    groups = {group: load_params(group) for group in GROUPS}
    if groups["cluster"].hash_weight and groups["cluster"].hash not in groups["hash"].methods:
        raise ParamsError(f"cluster.hash {groups['cluster'].hash!r} is mixed into the CNN runs but not in hash.methods "
                          f"{list(groups['hash'].methods)}: add it there, or set cluster.hash_weight: 0")
    check_cache_dir(groups["cache"].dir)


def main() -> None:
    args = parse_args(__doc__, ("--out", {"help": "listing of the .dvcignore lines written (a stage output)"}))
    check_params()
    params = load_params("fetch")
    lines = guard_input(params.input)
    for i, spec in enumerate(params.sets or [params]):
        if spec.source == "folder" and is_url(spec.folder.images):
            param = f"fetch.sets[{i}]" if params.sets else "fetch"
            lines.append(listing_line(spec.folder.images, param=f"{param}.folder.images"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


if __name__ == "__main__":
    run_stage(main)
