"""Source helper: download a Kaggle competition's files with the official ``kaggle`` client.

The ``kaggle`` package is optional (``pip install kaggle``) and imported only when a
download is really needed. Without network access, download the data by hand, unzip it
and point ``fetch.source: folder`` (or ``tfrecords``) at it instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import zipfile
from pathlib import Path

from neardup.contract import SourceError

log = logging.getLogger(__name__)


def _kaggle_installed() -> bool:
    return importlib.util.find_spec("kaggle") is not None


def _credentials_found() -> bool:
    """True when the kaggle client can find an API token (env vars or a token file)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (config_dir / "kaggle.json").is_file() or (config_dir / "access_token").is_file()


def _already_unzipped(dest: Path) -> bool:
    """True when ``dest`` holds something other than zip archives and hidden files."""
    if not dest.is_dir():
        return False
    return any(not p.name.startswith(".") and p.suffix.lower() != ".zip" for p in dest.iterdir())


def _manual_hint(slug: str, dest: Path) -> str:
    return (
        f"Alternatively download the data by hand from https://www.kaggle.com/competitions/{slug}/data, "
        f"unzip it into {dest} and use `fetch.source: folder` (or `tfrecords`) on the unzipped files."
    )


def download_competition(slug: str, dest: Path) -> Path:
    """Download and unzip all files of the Kaggle competition ``slug`` into ``dest``.

    Parameters
    ----------
    slug : str
        Competition slug as in its URL, e.g. ``"cassava-leaf-disease-classification"``.
    dest : Path
        Target folder. When it already holds unzipped files (anything but ``*.zip`` and
        hidden files) nothing is downloaded.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    SourceError
        If the ``kaggle`` package is missing, no API credentials are found, or the
        download/unzip fails (e.g. no network, competition rules not accepted).
    """
    dest = Path(dest)
    if not slug or "/" in slug.strip("/"):
        raise SourceError(f"Kaggle competition slug {slug!r} is invalid; set fetch.kaggle.competition to the name "
                          "in the competition URL")
    if _already_unzipped(dest):
        log.info("%s already holds the files of %s; skipping the download", dest, slug)
        return dest
    if not _kaggle_installed():
        raise SourceError(
            f"downloading Kaggle competition {slug!r} needs the kaggle client: run `pip install kaggle`. "
            + _manual_hint(slug, dest)
        )
    if not _credentials_found():
        raise SourceError(
            "no Kaggle API credentials found: create a token at https://www.kaggle.com/settings "
            "(API > Create New Token) and save it as ~/.kaggle/kaggle.json (chmod 600), or set the "
            "environment variables KAGGLE_USERNAME and KAGGLE_KEY. " + _manual_hint(slug, dest)
        )
    dest.mkdir(parents=True, exist_ok=True)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
        log.info("downloading Kaggle competition %s into %s", slug, dest)
        api.competition_download_files(slug, path=str(dest), quiet=False)
    except Exception as exc:  # noqa: BLE001 - the client raises many types (HTTP, OSError, ...)
        raise SourceError(
            f"downloading Kaggle competition {slug!r} failed: {type(exc).__name__}: {exc}. "
            f"Check the network and that you accepted the rules at "
            f"https://www.kaggle.com/competitions/{slug}/rules. " + _manual_hint(slug, dest)
        ) from exc

    archives = sorted(dest.glob("*.zip"))
    if not archives:
        raise SourceError(f"the Kaggle download of {slug!r} left no zip archive in {dest}. " + _manual_hint(slug, dest))
    for archive in archives:
        log.info("unzipping %s", archive)
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest)  # zipfile drops absolute paths and '..' components
        except (zipfile.BadZipFile, OSError) as exc:
            hint = _manual_hint(slug, dest)
            raise SourceError(f"cannot unzip {archive}: {exc}; delete it and retry. {hint}") from exc
        archive.unlink()
    return dest
