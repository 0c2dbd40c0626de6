"""fetch_input: keep the entries of ``fetch.input`` that DVC cannot hash out of DVC's sight.

Runs before every ``dvc repro`` (``always_changed``): FIFOs, devices, sockets, broken symlinks and
unreadable files under ``fetch.input`` are named in a managed block of ``.dvcignore`` before DVC
hashes the folder for the fetch stage (a FIFO would hang it, a broken symlink abort it). The
``--out`` listing (those lines) is a dependency of fetch, so fetch reruns, and lists them as
skipped, whenever they change. An image folder at a URL (``fetch.folder.images: s3://...``), which
DVC cannot hash, gets a line with a digest of its listing instead (:mod:`neardup.fetch.remote`).
"""
from pathlib import Path

from neardup.fetch.guard import guard_input
from neardup.files import is_url, listing_line
from neardup.params import load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--out", {"help": "listing of the .dvcignore lines written (a stage output)"}))
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
