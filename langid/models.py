"""Model files: GlotLID v3 pulled once into a cache, lid.176 embedded in the package.

Cache directory: ``$BABELSIEVE_CACHE`` or ``~/.cache/babelsieve``; GlotLID lives in
``<cache>/models/glotlid/model_v3.bin`` with ``model_v3.bin.json`` beside it recording its sha256,
size and source. ``pull_glotlid()`` downloads from the Hugging Face hub (``cis-lmu/glotlid``,
``model_v3.bin``; the hub's LFS sha256 is checked) or copies from any fsspec URL (``file://``,
``s3://``, ``https://`` ...), optionally checking an expected sha256; the file is written under a
temporary name and renamed only once complete and verified.

CLI: ``babelsieve models pull glotlid [--url URL] [--sha256 HEX] [--cache DIR]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from importlib import resources
from pathlib import Path

__all__ = [
    "ModelUnavailableError",
    "ChecksumMismatchError",
    "cache_dir",
    "glotlid_path",
    "find_glotlid",
    "pull_glotlid",
    "verify_model",
    "fetch_model",
    "is_url",
    "lid176_path",
    "LID176_SHA256",
    "GLOTLID_REPO",
    "GLOTLID_FILE",
]

GLOTLID_REPO = "cis-lmu/glotlid"
GLOTLID_FILE = "model_v3.bin"
LID176_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"

HOW_TO_GET = (
    "GlotLID v3 is not in the cache. With network access run `babelsieve models pull glotlid` "
    f"(downloads {GLOTLID_FILE} from the Hugging Face hub repo {GLOTLID_REPO}). Without network, copy "
    f"{GLOTLID_FILE} from https://huggingface.co/{GLOTLID_REPO} to this machine and run "
    "`babelsieve models pull glotlid --url file:///path/to/model_v3.bin` (any fsspec URL works, e.g. s3://...). "
    "Until then babelsieve uses the embedded fastText lid.176 model (--backend lid176)."
)


class ModelUnavailableError(RuntimeError):
    """The model could not be found or downloaded; the message says how to get it."""


class ChecksumMismatchError(RuntimeError):
    """A downloaded or cached model file does not have the expected sha256."""


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    if cache is None:
        cache = os.environ.get("BABELSIEVE_CACHE") or Path.home() / ".cache" / "babelsieve"
    return Path(cache).expanduser()


def glotlid_path(cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "models" / "glotlid" / GLOTLID_FILE


def _meta_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def find_glotlid(cache: str | os.PathLike | None = None) -> Path | None:
    """Path of the cached GlotLID model if it was pulled (file + checksum record, sizes agree), else None."""
    p = glotlid_path(cache)
    meta = _meta_path(p)
    if not (p.is_file() and meta.is_file()):
        return None
    try:
        rec = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("size") != p.stat().st_size:
        return None
    return p


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def verify_model(path: str | os.PathLike) -> str:
    """Re-hash a pulled model and compare with its recorded sha256; returns the digest."""
    path = Path(path)
    rec = json.loads(_meta_path(path).read_text())
    digest = _sha256_file(path)
    if digest != rec["sha256"]:
        raise ChecksumMismatchError(
            f"{path}: sha256 {digest} differs from the recorded {rec['sha256']}; "
            "delete it and run `babelsieve models pull glotlid` again"
        )
    return digest


def _copy_url(url: str, dest: Path) -> str:
    """Stream ``url`` into ``dest`` (temporary name), returning the sha256."""
    import fsspec

    h = hashlib.sha256()
    try:
        with fsspec.open(url, "rb") as src, open(dest, "wb") as out:
            while b := src.read(1 << 22):
                h.update(b)
                out.write(b)
    except FileNotFoundError as e:
        raise ModelUnavailableError(f"cannot read {url}: file not found. {HOW_TO_GET}") from e
    except ImportError as e:
        raise ModelUnavailableError(f"cannot read {url}: {e} (install the fsspec backend for this URL)") from e
    except OSError as e:
        raise ModelUnavailableError(f"cannot read {url}: {e}. {HOW_TO_GET}") from e
    return h.hexdigest()


def _hub_download(tmp: Path) -> tuple[str, str | None, str]:
    """Download from the HF hub into ``tmp``; returns (sha256, expected sha256 from the hub, source)."""
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise ModelUnavailableError(f"huggingface_hub is not installed. {HOW_TO_GET}") from e
    try:
        url = hf_hub_url(GLOTLID_REPO, GLOTLID_FILE)
        expected = None
        try:
            meta = get_hf_file_metadata(url)
            etag = (meta.etag or "").strip('"')
            expected = etag if len(etag) == 64 else None  # LFS files: the etag is the sha256
        except Exception:
            pass
        local = hf_hub_download(GLOTLID_REPO, GLOTLID_FILE, local_dir=str(tmp.parent / ".hf"))
    except Exception as e:
        raise ModelUnavailableError(
            f"could not download {GLOTLID_FILE} from the Hugging Face hub ({type(e).__name__}: {e}). {HOW_TO_GET}"
        ) from e
    os.replace(local, tmp)
    return _sha256_file(tmp), expected, f"hf://{GLOTLID_REPO}/{GLOTLID_FILE}"


def pull_glotlid(
    url: str | None = None,
    cache: str | os.PathLike | None = None,
    sha256: str | None = None,
    force: bool = False,
) -> Path:
    """Fetch GlotLID v3 into the cache and record its checksum; returns the model path.

    ``url=None`` downloads from the HF hub; otherwise any fsspec URL. ``sha256``: expected digest
    (mismatch -> ``ChecksumMismatchError`` and nothing is installed). An existing cached model is
    kept unless ``force`` (or its checksum differs from ``sha256``).
    """
    dest = glotlid_path(cache)
    existing = find_glotlid(cache)
    if existing is not None and not force:
        rec = json.loads(_meta_path(existing).read_text())
        if sha256 is None or rec["sha256"] == sha256.lower():
            return existing
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    try:
        if url is None:
            digest, hub_expected, source = _hub_download(tmp)
            expected = (sha256 or hub_expected or "").lower() or None
        else:
            digest = _copy_url(url, tmp)
            expected, source = (sha256.lower() if sha256 else None), url
        if expected is not None and digest != expected:
            raise ChecksumMismatchError(
                f"{source}: sha256 is {digest}, expected {expected}; the file was not installed"
            )
        _check_fasttext(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    rec = {
        "file": dest.name,
        "sha256": digest,
        "size": dest.stat().st_size,
        "source": source,
        "verified_against": "expected sha256" if expected else "recorded only",
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _meta_path(dest).write_text(json.dumps(rec, indent=1) + "\n")
    return dest


def _check_fasttext(path: Path) -> None:
    """Fail early on a file that is not a fastText model (fastText itself would crash or abort)."""
    with open(path, "rb") as f:
        head = f.read(8)
    # fastText binary: int32 magic 793712314 (0x2F4F16BA), then int32 version
    if len(head) < 8 or int.from_bytes(head[:4], "little") != 793712314:
        raise ModelUnavailableError(f"{path.name}: not a fastText model file (bad magic number)")


def lid176_path() -> Path:
    """The embedded lid.176.ftz (CC-BY-SA-3.0), package data of babelsieve.langid."""
    ref = resources.files("babelsieve.langid").joinpath("data", "lid.176.ftz")
    return Path(str(ref))


def _url_cache_path(url: str, cache: str | os.PathLike | None = None) -> Path:
    """Where a model fetched from ``url`` is cached: one directory per URL (its sha256), the file's own name."""
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "model.bin"
    return cache_dir(cache) / "models" / "url" / hashlib.sha256(url.encode()).hexdigest()[:24] / name


def is_url(location: str) -> bool:
    """True for an fsspec URL (``s3://``, ``https://``, ...), False for a local path (``file://`` is a URL)."""
    return "://" in location


def fetch_model(location: str, sha256: str | None = None, cache: str | os.PathLike | None = None) -> tuple[Path, str]:
    """A model file by path or fsspec URL, verified; returns ``(local path, sha256)``.

    A local path is hashed where it is. A URL is copied once into ``<cache>/models/url/<hash of the URL>/``
    (temporary name, renamed when complete) with a ``.json`` record of its sha256 and size, as GlotLID is
    (:func:`pull_glotlid`); every later call re-hashes the cached file against that record, so a
    corrupted or truncated cache is detected: it is deleted and fetched again. ``sha256``: the expected
    digest; a file that does not match raises :class:`ChecksumMismatchError` (a fetched one is not kept).
    """
    expected = sha256.lower() if sha256 else None
    if not is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"model file not found: {location}")
        digest = _sha256_file(path)
        if expected and digest != expected:
            raise ChecksumMismatchError(f"{location}: sha256 is {digest}, expected {expected}")
        return path, digest
    dest = _url_cache_path(location, cache)
    meta = _meta_path(dest)
    if dest.is_file() and meta.is_file():
        try:
            rec = json.loads(meta.read_text())
        except (OSError, ValueError):
            rec = {}
        digest = _sha256_file(dest)
        if digest == rec.get("sha256") and dest.stat().st_size == rec.get("size") and expected in (None, digest):
            return dest, digest
        # corrupted (or another file than the expected one): fetch again below
        dest.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    try:
        try:
            digest = _copy_url(location, tmp)
        except ModelUnavailableError as e:  # without _copy_url's GlotLID advice
            raise ModelUnavailableError(f"cannot fetch the model {location}: {e.__cause__ or e}") from None
        if expected and digest != expected:
            raise ChecksumMismatchError(f"{location}: sha256 is {digest}, expected {expected}; not cached")
        _check_fasttext(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    rec = {"file": dest.name, "sha256": digest, "size": dest.stat().st_size, "source": location,
           "verified_against": "expected sha256" if expected else "recorded only",
           "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp_meta = meta.with_name(f"{meta.name}.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp_meta, meta)  # concurrent workers fetching the same URL: each rename is whole
    return dest, digest
