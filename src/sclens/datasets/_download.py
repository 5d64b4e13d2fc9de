"""Fetch a pinned Gene Ontology release with pooch (``go-basic.obo`` + the organism's GAF).

The registry pins each file by URL and SHA-256. **The hashes of the 2022-07-01 files are not
recorded yet** (sclens was built without access to geneontology.org): until they are, the first
download is trusted on first use: its SHA-256 is logged and recorded beside it in the cache
(``<file>.sha256``), and every later use verifies the cached file against it. Once a hash is
pinned, a file that does not match it is rejected and removed from the cache. A cached file that
fails to parse (a truncated download, an HTML error page) is removed too, so the next call
downloads it afresh.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from ._ontology import GeneOntology

logger = logging.getLogger("sclens")

DEFAULT_RELEASE = "2022-07-01"
GAF_FILES = {"human": "goa_human.gaf.gz", "mouse": "mgi.gaf.gz"}
_BASE = "https://release.geneontology.org/{release}/{folder}/{name}"


@dataclass(frozen=True)
class FileSpec:
    """A pinned file: where to get it and its SHA-256 (``None``: not pinned yet, see module doc)."""

    url: str
    sha256: str | None


def _release_files(release: str) -> dict[str, FileSpec]:
    files = {"go-basic.obo": FileSpec(_BASE.format(release=release, folder="ontology", name="go-basic.obo"), None)}
    for name in GAF_FILES.values():
        files[name] = FileSpec(_BASE.format(release=release, folder="annotations", name=name), None)
    return files


# release -> file name -> FileSpec. Add a release by pinning the SHA-256 of each file.
GO_RELEASES: dict[str, dict[str, FileSpec]] = {DEFAULT_RELEASE: _release_files(DEFAULT_RELEASE)}


def cache_dir() -> Path:
    """Directory of downloaded GO files (pooch's user cache, ``$SCLENS_CACHE`` overrides it)."""
    import pooch

    root = os.environ.get("SCLENS_CACHE")
    return (Path(root) if root else Path(pooch.os_cache("sclens"))) / "go"


def _copy_file_url(url: str, output_file: str, pooch_obj: object = None) -> None:
    """Pooch downloader for ``file://`` URLs (local mirrors and tests)."""
    source = Path(unquote(urlparse(url).path))
    if not source.is_file():
        msg = f"Local GO file {str(source)!r} (from {url!r}) not found."
        raise FileNotFoundError(msg)
    shutil.copyfile(source, output_file)


def fetch_go_file(release: str, name: str) -> Path:
    """Download (or reuse from the cache) one file of a pinned GO release and verify its hash."""
    import pooch

    if release not in GO_RELEASES:
        msg = f"GO release {release!r} is not pinned in sclens; available: {sorted(GO_RELEASES)}."
        raise ValueError(msg)
    files = GO_RELEASES[release]
    if name not in files:
        msg = f"GO release {release} has no pinned file {name!r}; available: {sorted(files)}."
        raise ValueError(msg)
    spec = files[name]
    folder = cache_dir() / release
    target = folder / name
    if spec.sha256 is None and target.is_file():
        _verify_recorded(target, release)
    if spec.sha256 is None and not target.is_file():
        logger.warning(
            "GO %s file %s has no pinned SHA-256 in sclens: it is downloaded and cached unverified "
            "(see sclens.datasets._download.GO_RELEASES).",
            release,
            name,
        )
    known_hash = None if spec.sha256 is None else f"sha256:{spec.sha256}"
    downloader = _copy_file_url if spec.url.startswith("file://") else None
    if downloader is None:
        from .._settings import settings

        downloader = pooch.HTTPDownloader(progressbar=settings.progress)
    try:
        path = pooch.retrieve(spec.url, known_hash=known_hash, fname=name, path=folder, downloader=downloader)
    except ValueError as e:
        if "hash" not in str(e).lower():
            raise
        discard(target)  # never trust a cached copy that failed verification
        msg = (
            f"GO {release} file {name} from {spec.url} does not match its pinned SHA-256 {spec.sha256}: "
            f"the download is corrupt or truncated (or the file changed upstream). The cached copy "
            f"{str(target)!r} was removed; run the call again to re-download."
        )
        raise ValueError(msg) from e
    if spec.sha256 is None and not _sidecar(Path(path)).is_file():
        digest = pooch.file_hash(path)
        _sidecar(Path(path)).write_text(digest + "\n")
        logger.warning("GO %s file %s: SHA-256 of the received file is %s (recorded).", release, name, digest)
    return Path(path)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verify_recorded(path: Path, release: str) -> None:
    """Check a cached, unpinned file against the SHA-256 recorded at its first download."""
    import pooch

    record = _sidecar(path)
    if not record.is_file():
        return
    recorded = record.read_text().strip()
    if pooch.file_hash(str(path)) != recorded:
        discard(path)
        msg = (
            f"The cached GO {release} file {str(path)!r} changed since it was downloaded (SHA-256 differs from "
            f"the recorded {recorded}); it was removed from the cache. Run the call again to re-download it."
        )
        raise ValueError(msg)


def discard(path: Path) -> None:
    """Remove a cached file and its recorded hash."""
    Path(path).unlink(missing_ok=True)
    _sidecar(Path(path)).unlink(missing_ok=True)


def parse_cached(reader, path: Path, what: str):
    """``reader(path)``; a file that fails to parse is removed from the cache and named in the error."""
    try:
        return reader(path)
    except (ValueError, KeyError, OSError, EOFError) as e:
        discard(path)
        msg = (
            f"The downloaded {what} {str(path)!r} could not be read ({e}); it is damaged (a truncated download "
            "or an error page from the server) and was removed from the cache. Run the call again to download "
            "it afresh; if it fails again, check the release URL or set $SCLENS_CACHE."
        )
        raise ValueError(msg) from e


def _resolve_release(release: str | None) -> str:
    return DEFAULT_RELEASE if release is None else str(release)


@lru_cache(maxsize=4)
def load_go_ontology(*, release: str | None = None) -> GeneOntology:
    """Fetch and parse ``go-basic.obo`` of a pinned release (cached in-process)."""
    from ._obo import read_obo

    return parse_cached(read_obo, fetch_go_file(_resolve_release(release), "go-basic.obo"), "GO ontology")


@lru_cache(maxsize=4)
def load_go_release(
    *, organism: str, release: str | None = None
) -> tuple[GeneOntology, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Fetch and parse the ontology and the organism's GAF: ``(ontology, annotations, aliases, metadata)``."""
    from ._gaf import read_gaf
    from ._snapshot import LICENCE

    if organism not in GAF_FILES:
        msg = f"No GAF is pinned for organism {organism!r}; available: {sorted(GAF_FILES)}."
        raise ValueError(msg)
    release = _resolve_release(release)
    ontology = load_go_ontology(release=release)
    gaf_name = GAF_FILES[organism]
    annotations, aliases, header = parse_cached(read_gaf, fetch_go_file(release, gaf_name), "GO annotation file")
    for col in annotations.columns:
        annotations[col] = annotations[col].astype("category")
    metadata = {
        "go_release": ontology.release,
        "annotation_source": f"GO Consortium {gaf_name}",
        "annotation_date": header.get("date-generated", release),
        "organism": organism,
        "licence": LICENCE.split(";")[0] + ".",
    }
    return ontology, annotations, aliases, metadata
