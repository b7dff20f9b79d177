"""Official weights and reference genomes by name: downloaded once (resumable, verified), converted once, cached.

    senformer download enformer      # DeepMind's Sonnet checkpoint -> $SENFORMER_HOME/weights/enformer
    resolve_weights("enformer")      # that native folder, fetched on first use
    resolve_genome("hg38")           # $SENFORMER_HOME/genomes/hg38/hg38.fa.gz (bgzip) with .fai and .gzi
    load_model("enformer")           # senformer.load_model: a name or any weights path

Names are resolved here and in the commands (the edge): ``weights/`` and ``data/`` below open paths only.

The cache lives in ``$SENFORMER_HOME`` (default: the user's cache folder, e.g. ``~/.cache/senformer``). The
download servers can be replaced with ``$SENFORMER_WEIGHTS_URL`` (the folder holding the checkpoint files)
and ``$SENFORMER_GENOME_URL`` (the folder holding ``<genome>/bigZips/<genome>.fa.gz``), for a mirror or a
local copy. ``requests`` moves the bytes; this module adds resuming from a kept ``.part`` file, a per-read
timeout and a minimum rate (a stalled or trickling server ends the attempt), verification and the one-time
conversion. Every result appears by an atomic rename, so an
interrupted run never leaves a half-written file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UserError

HOME_ENV = "SENFORMER_HOME"
WEIGHTS_URL_ENV = "SENFORMER_WEIGHTS_URL"
GENOME_URL_ENV = "SENFORMER_GENOME_URL"
DEFAULT_WEIGHTS_URL = "https://storage.googleapis.com/dm-enformer/models/enformer/sonnet_weights"
DEFAULT_GENOME_URL = "https://hgdownload.soe.ucsc.edu/goldenPath"
DOWNLOAD_ATTEMPTS = 3  # a cut connection is resumed this many times within one call before giving up
TIMEOUT_S = 60  # connect and per-read timeout: a stalled server ends the attempt instead of hanging
# A server that trickles (a byte every 59 s passes any per-read timeout) ends the attempt too: fewer than
# MIN_RATE_BPS bytes a second, averaged over RATE_WINDOW_S seconds, is a stall.
MIN_RATE_BPS = 1024
RATE_WINDOW_S = 60.0
CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class WeightsSource:
    """Weights known by name: a TensorFlow checkpoint under the weights URL, and a Hugging Face copy."""

    checkpoint: str  # file prefix: <checkpoint>.index and <checkpoint>.data-00000-of-00001
    description: str
    huggingface_repo: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return (f"{self.checkpoint}.index", f"{self.checkpoint}.data-00000-of-00001")


WEIGHTS: dict[str, WeightsSource] = {
    "enformer": WeightsSource(
        checkpoint="enformer-fine-tuned-human-1",
        description="DeepMind's published Enformer (Avsec et al. 2021), Sonnet checkpoint, 959 MB",
        huggingface_repo="EleutherAI/enformer-official-rough",
    ),
}

REPLICATES: dict[str, tuple[str, ...]] = {}
"""Names that stand for a published model's replicates, in order (``predict --ensemble`` averages them)."""


def replicates(name: str) -> list[str]:
    """The weights names of the replicates ``name`` stands for (``predict --weights NAME --ensemble``)."""
    if name in REPLICATES:
        return list(REPLICATES[name])
    known = f"; names with replicates: {', '.join(sorted(REPLICATES))}" if REPLICATES else ""
    raise UserError(f"--ensemble averages several weights: {name!r} is one model; give --weights a comma-separated "
                    f"list of weights files or names{known}")


GENOMES: dict[str, str] = {
    "hg38": "UCSC hg38 (GRCh38) human genome",
    "mm10": "UCSC mm10 (GRCm38) mouse genome",
}

WEIGHTS_SOURCES = ("dm-enformer", "huggingface")


# Locations ------------------------------------------------------------------------------------------
def home() -> Path:
    """The cache folder: ``$SENFORMER_HOME``, else the platform's user cache folder."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    import pooch

    return Path(pooch.os_cache("senformer"))


def weights_path(name: str) -> Path:
    """Where the native copy of the named weights lives (``config.json`` + ``model.safetensors``)."""
    return home() / "weights" / name


def genome_path(name: str) -> Path:
    """Where the bgzip FASTA of the named genome lives (its ``.fai`` and ``.gzi`` beside it)."""
    return home() / "genomes" / name / f"{name}.fa.gz"


def weights_url(name: str) -> str:
    """The folder URL of the named weights' checkpoint files."""
    return (os.environ.get(WEIGHTS_URL_ENV) or DEFAULT_WEIGHTS_URL).rstrip("/")


def genome_url(name: str) -> str:
    """The URL of UCSC's gzip FASTA of the named genome."""
    base = (os.environ.get(GENOME_URL_ENV) or DEFAULT_GENOME_URL).rstrip("/")
    return f"{base}/{name}/bigZips/{name}.fa.gz"


def _known(kind: str, names) -> str:
    return f"known {kind}: {', '.join(sorted(names))}"


# Resolution -----------------------------------------------------------------------------------------
def _is_weights_path(text: str) -> bool:
    """A file or folder, or a TensorFlow checkpoint prefix (``PREFIX.index`` exists)."""
    path = Path(text).expanduser()
    return path.exists() or Path(f"{path}.index").is_file()


def resolve_weights(name_or_path: str | os.PathLike, progress: bool = True) -> Path:
    """A local weights path for ``name_or_path``.

    An existing file, folder or checkpoint prefix is returned unchanged (a local path wins over a name); a
    known name (:data:`WEIGHTS`) gives its cached native folder, downloading and converting it on first
    use; anything else is a :class:`UserError` saying how to get weights.
    """
    text = os.fspath(name_or_path)
    if _is_weights_path(text):
        return Path(text).expanduser()
    if text in WEIGHTS:
        cached = weights_path(text)
        if cached.is_dir():
            return cached
        return download_weights(text, progress=progress)
    raise UserError(
        f"no weights at {text!r}: not a file, folder or checkpoint prefix, and not a known name "
        f"({_known('weights', WEIGHTS)}); get the official weights with `senformer download enformer` "
        "and pass --weights enformer"
    )


def load_model(name_or_path: str | os.PathLike, overrides=None, strict: bool = True, **options):
    """:func:`senformer.weights.load_model` (every argument and the result are its) that also takes a known
    name: ``"enformer"`` is DeepMind's model, converted once into the cache (:func:`resolve_weights`;
    downloaded on first use). A local path of that name wins. This is ``senformer.load_model``: names are
    resolved here and in the commands, never below (``weights/`` and ``data/`` open paths)."""
    from .weights import load_model as load_path

    if os.fspath(name_or_path) in WEIGHTS and not Path(name_or_path).exists():
        name_or_path = resolve_weights(name_or_path)
    return load_path(name_or_path, overrides, strict, **options)


def resolve_genome(name_or_path: str | os.PathLike, progress: bool = True) -> Path:
    """A local FASTA path for ``name_or_path``: an existing file unchanged; ``hg38``/``mm10`` the cached
    bgzip copy (downloaded and indexed on first use); anything else a :class:`UserError`."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text in GENOMES:
        cached = genome_path(text)
        if cached.is_file():
            return cached
        return download_genome(text, progress=progress)
    raise UserError(
        f"no FASTA at {text!r}: not a file and not a known genome ({_known('genomes', GENOMES)}); "
        "fetch one with `senformer download hg38`"
    )


# Downloading ----------------------------------------------------------------------------------------
class DownloadInterrupted(UserError):
    """The connection failed on every attempt; the bytes received so far are kept for the next run."""


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One process at a time fills the cache, so two first uses never append to the same ``.part`` file."""
    from .outputs import DIRECTORY, Output

    with Output(home(), DIRECTORY, command="download", grown=True, wait=True):
        yield


def _remote_size(url: str) -> int | None:
    """The file's size from a HEAD request (None when the server does not say)."""
    import requests

    try:
        response = requests.head(url, timeout=TIMEOUT_S, allow_redirects=True, headers={"Accept-Encoding": "identity"})
    except requests.RequestException as error:
        raise UserError(f"cannot reach {url} ({_reason(error)}); offline, set ${WEIGHTS_URL_ENV} or ${GENOME_URL_ENV} to "
                        "a reachable copy, or pass local files (`senformer convert` reads a copied checkpoint)") from None
    if response.status_code >= 400:
        raise UserError(f"{url}: the server answered HTTP {response.status_code} {response.reason}")
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _reason(error: Exception) -> str:
    """The innermost cause of a requests error, on one line."""
    while error.__context__ is not None and not str(error):
        error = error.__context__
    return " ".join(str(error).split()) or type(error).__name__


class _TooSlow(OSError):
    """The server sent fewer than the minimum bytes per second over a whole rate window."""


def _transfer(response, handle, bar, min_rate: float, window: float) -> None:
    """Copy the body of ``response`` (requests, streamed) into ``handle`` as it arrives, ending in
    :class:`_TooSlow` when a ``window`` of seconds brings fewer than ``min_rate`` bytes a second. ``read1``
    returns whatever one socket read gives, so a trickle is measured byte by byte, not per full chunk."""
    started, received = time.monotonic(), 0
    read = getattr(response.raw, "read1", None) or response.raw.read  # urllib3 < 2.1 has no read1
    while chunk := read(CHUNK_BYTES, decode_content=False):
        handle.write(chunk)
        bar.update(len(chunk))
        received += len(chunk)
        elapsed = time.monotonic() - started
        if elapsed >= window:
            if received < min_rate * elapsed:
                raise _TooSlow(f"the server sent {received:,} bytes in {elapsed:.0f} s, slower than the minimum "
                               f"{min_rate:,.0f} bytes/s")
            started, received = time.monotonic(), 0


def download_file(url: str, destination: str | os.PathLike, progress: bool = True,
                  attempts: int = DOWNLOAD_ATTEMPTS, *, min_rate: float | None = None,
                  window: float | None = None) -> Path:
    """Download ``url`` to ``destination``, resuming from ``destination.part`` after a cut connection.

    The bytes accumulate in ``destination.part``; an HTTP Range request continues it, both within this
    call (up to ``attempts`` tries) and in a later call. The file is renamed into place only when its size
    equals the server's ``Content-Length``. A server that ignores the Range header is caught by that size
    check and the download restarts from zero. An attempt ends when a read waits :data:`TIMEOUT_S` or the
    rate stays below ``min_rate`` bytes/s (:data:`MIN_RATE_BPS`) for ``window`` s (:data:`RATE_WINDOW_S`).
    """
    import requests
    import urllib3
    from tqdm.auto import tqdm

    min_rate = MIN_RATE_BPS if min_rate is None else min_rate
    window = RATE_WINDOW_S if window is None else window

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    expected = _remote_size(url)
    last_error: Exception | None = None
    for _ in range(attempts):
        done = partial.stat().st_size if partial.exists() else 0
        if expected is not None and done > expected:
            partial.unlink()
            done = 0
        if expected is None or done < expected:
            headers = {"Accept-Encoding": "identity"}  # Range offsets count the stored bytes, not decoded ones
            if done:
                headers["Range"] = f"bytes={done}-"
            bar = tqdm(total=expected, initial=done, unit="B", unit_scale=True, desc=destination.name,
                       disable=not progress, leave=True)
            try:
                with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
                    response.raise_for_status()
                    with open(partial, "ab") as handle:
                        _transfer(response, handle, bar, min_rate, window)
            except requests.HTTPError as error:
                status = error.response.status_code if error.response is not None else "?"
                if status == 416:  # the range starts at or past the end: the kept part is stale
                    partial.unlink(missing_ok=True)
                    last_error = error
                    continue
                raise UserError(f"{url}: the server answered HTTP {status}") from None
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                last_error = error
                continue
            finally:
                bar.close()
        size = partial.stat().st_size
        if expected is None or size == expected:
            from .outputs import move_into_place

            return move_into_place(partial, destination)
        last_error = OSError(f"received {size:,} bytes, expected {expected:,}")
        if size > expected:  # the server sent the whole file again instead of the requested range
            partial.unlink()
    kept = partial.stat().st_size if partial.exists() else 0
    total = f" of {expected:,}" if expected is not None else ""
    raise DownloadInterrupted(
        f"download of {url} failed after {attempts} attempts ({_reason(last_error)}); {kept:,}{total} bytes "
        "are kept, run the command again to resume"
    )


# Weights ----------------------------------------------------------------------------------------------
def verify_checkpoint(prefix: str | os.PathLike) -> int:
    """Check every block and tensor checksum of a TensorFlow checkpoint; returns the number of tensors.

    The ``.index`` table's block checksums are checked on opening; every tensor's bytes are then read and
    checked against the CRC32C stored in its index entry, and the data shards must hold exactly the bytes
    the index places in them.
    """
    from .weights.tensorbundle import TensorBundle

    bundle = TensorBundle(prefix)
    ends: dict[int, int] = {}
    for entry in bundle.entries.values():
        ends[entry.shard_id] = max(ends.get(entry.shard_id, 0), entry.offset + entry.size)
    for shard_id, end in ends.items():
        shard = bundle.shard_path(shard_id)
        if shard.is_file() and shard.stat().st_size != end:
            raise UserError(f"{shard} holds {shard.stat().st_size:,} bytes, its index places {end:,}")
    for key in bundle.keys():
        bundle.get(key)
    return len(bundle)


def _fresh_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))


def _install_folder(built: Path, destination: Path) -> None:
    """Move a completed folder into place, replacing an older copy."""
    from .outputs import move_into_place

    move_into_place(built, destination)


def _convert_into_cache(source: str | os.PathLike, name: str, format: str | None = None) -> Path:
    from .weights.loading import load_local_model
    from .weights.native import save_model

    destination = weights_path(name)
    built = _fresh_sibling(destination)
    try:
        # What `senformer convert SOURCE DESTINATION` does; strict, so every tensor is present with its shape.
        save_model(load_local_model(source, format=format), built)
        _install_folder(built, destination)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return destination


def download_weights(name: str, force: bool = False, progress: bool = True, source: str = "dm-enformer") -> Path:
    """Download, verify and convert the named weights into the cache; returns the native folder.

    ``source`` is ``dm-enformer`` (DeepMind's checkpoint, at ``$SENFORMER_WEIGHTS_URL`` when set) or
    ``huggingface`` (the converted copy on the Hugging Face hub; needs ``pip install huggingface_hub``).
    Without ``force`` an existing cached copy is returned as it is.
    """
    if name not in WEIGHTS:
        raise UserError(f"unknown weights {name!r} ({_known('weights', WEIGHTS)})")
    if source not in WEIGHTS_SOURCES:
        raise UserError(f"unknown weights source {source!r} (choose from {', '.join(WEIGHTS_SOURCES)})")
    entry = WEIGHTS[name]
    destination = weights_path(name)
    with _locked():
        if destination.is_dir() and not force:
            return destination
        if source == "huggingface":
            return _download_huggingface(name, entry, progress)
        folder = home() / "downloads" / name
        if force:
            shutil.rmtree(folder, ignore_errors=True)
        base = weights_url(name)
        # A network failure keeps what arrived (the next run resumes); only a failed verification discards it.
        for file_name in entry.files:
            target = folder / file_name
            if not target.is_file():
                download_file(f"{base}/{file_name}", target, progress=progress)
        if progress:
            print(f"verifying {folder / entry.checkpoint} (every tensor's CRC32C)", file=sys.stderr)
        try:
            verify_checkpoint(folder / entry.checkpoint)
        except (UserError, FileNotFoundError) as error:
            # A damaged download is useless: leave nothing of it in the cache.
            shutil.rmtree(folder, ignore_errors=True)
            raise UserError(f"{base}/{entry.checkpoint}: refused the download, removed it: {error}") from None
        if progress:
            print(f"converting to {destination}", file=sys.stderr)
        _convert_into_cache(folder / entry.checkpoint, name, format="tf-checkpoint")
        _write_provenance(name, {"source": "dm-enformer", "urls": [f"{base}/{f}" for f in entry.files],
                                 "bytes": {f: (folder / f).stat().st_size for f in entry.files}})
        # The native copy holds every tensor; the 959 MB checkpoint is not needed again.
        shutil.rmtree(folder, ignore_errors=True)
    return destination


def _download_huggingface(name: str, entry: WeightsSource, progress: bool) -> Path:
    try:
        import huggingface_hub
    except ImportError:
        raise UserError("--source huggingface needs huggingface_hub: pip install 'senformer[hub]'") from None
    if entry.huggingface_repo is None:
        raise UserError(f"weights {name!r} have no Hugging Face copy")
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    cache = home() / "huggingface"
    silence = not progress and not are_progress_bars_disabled()
    if silence:
        disable_progress_bars()
    try:
        folder = huggingface_hub.snapshot_download(
            entry.huggingface_repo, cache_dir=cache, allow_patterns=["config.json", "*.safetensors", "*.bin"],
            endpoint=os.environ.get("HF_ENDPOINT"),  # read per call (the library reads it once, at import)
        )
    except (huggingface_hub.utils.HfHubHTTPError, OSError, ValueError) as error:
        raise UserError(f"cannot download {entry.huggingface_repo} from the Hugging Face hub ({_reason(error)})") from None
    finally:
        if silence:
            enable_progress_bars()
    if progress:
        print(f"converting to {weights_path(name)}", file=sys.stderr)
    destination = _convert_into_cache(folder, name, format="enformer-pytorch")
    _write_provenance(name, {"source": "huggingface", "repository": entry.huggingface_repo})
    # As with the TensorFlow checkpoint, the native copy is all that is used from now on.
    shutil.rmtree(cache, ignore_errors=True)
    return destination


def _write_provenance(name: str, values: dict) -> None:
    from .version import __version__
    from .io import write_json

    record = {"name": name, **values, "converted_by": f"senformer {__version__}",
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(home() / "weights" / f"{name}.json", record)


# Genomes ----------------------------------------------------------------------------------------------
def _recompress_as_bgzip(gzip_path: Path, bgzip_path: Path) -> None:
    """gzip FASTA -> bgzip FASTA (random access), checking the gzip CRC32 and length on the way."""
    from Bio import bgzf

    with gzip.open(gzip_path, "rb") as source, bgzf.BgzfWriter(str(bgzip_path), "wb") as target:
        first = source.read(1)
        if first != b">":
            raise UserError(f"{gzip_path.name} is not a FASTA file (it starts with {first!r}, not '>')")
        target.write(first)
        while chunk := source.read(1 << 20):
            target.write(chunk)


def download_genome(name: str, force: bool = False, progress: bool = True) -> Path:
    """Download UCSC's ``<name>.fa.gz``, recompress it as bgzip and index it (``.fai``, ``.gzi``) once."""
    if name not in GENOMES:
        raise UserError(f"unknown genome {name!r} ({_known('genomes', GENOMES)})")
    import pyfaidx

    destination = genome_path(name)
    with _locked():
        if destination.is_file() and not force:
            return destination
        url = genome_url(name)
        download = home() / "downloads" / f"{name}.fa.gz"
        if force:
            download.unlink(missing_ok=True)
            Path(f"{download}.part").unlink(missing_ok=True)
        if not download.is_file():
            download_file(url, download, progress=progress)
        built = _fresh_sibling(destination.parent)
        try:
            if progress:
                print(f"recompressing {download.name} as bgzip and indexing it", file=sys.stderr)
            fasta = built / destination.name
            _recompress_as_bgzip(download, fasta)
            pyfaidx.Faidx(str(fasta)).close()  # writes .fai and .gzi
            _install_folder(built, destination.parent)
        except (gzip.BadGzipFile, EOFError, zlib.error, pyfaidx.FastaIndexingError) as error:
            download.unlink(missing_ok=True)
            raise UserError(f"{url}: damaged download, removed it ({_reason(error)}); run the command again") from None
        except UserError:
            download.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(built, ignore_errors=True)
        download.unlink()
    return destination
