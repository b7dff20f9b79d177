"""Official weights and reference genomes by name: downloaded once (resumable, verified), converted once, cached.

    senformer download enformer      # DeepMind's Sonnet checkpoint -> $SENFORMER_HOME/weights/enformer
    senformer download borzoi:1      # calico's replicate 1 (human head) -> .../weights/borzoi-replicate-1
    resolve_weights("flashzoi")      # that native folder, fetched on first use
    replicates("borzoi")             # the four replicates' names, for an ensemble
    resolve_genome("hg38")           # $SENFORMER_HOME/genomes/hg38/hg38.fa.gz (bgzip) with .fai and .gzi
    load_model("borzoi-mouse")       # senformer.load_model: a name or any weights path

Names are resolved here and in the commands (the edge): ``weights/`` and ``data/`` below open paths only.
A name is the Hugging Face repository's (``borzoi-replicate-2-mouse``, ``flashzoi-replicate-0``: what a
borzoi-pytorch user types) or its short form (``borzoi:2``/``borzoi-mouse:2``, ``flashzoi``: replicate 0);
both name one cache folder, the repository's name.

The cache lives in ``$SENFORMER_HOME`` (default: the user's cache folder, e.g. ``~/.cache/senformer``). The
download servers can be replaced (a mirror or a local copy) with ``$SENFORMER_WEIGHTS_URL`` (the folder
holding DeepMind's checkpoint files), ``$SENFORMER_BORZOI_URL`` (the folder holding calico's
``f<replicate>/model<head>_best.h5``), ``$SENFORMER_HUGGINGFACE_URL`` (a Hugging Face hub: ``<repository>/
resolve/main/<file>``; default ``$HF_ENDPOINT``, else huggingface.co) and ``$SENFORMER_GENOME_URL`` (the folder
holding ``<genome>/bigZips/<genome>.fa.gz``). ``requests`` moves the bytes; this module adds resuming from a
kept ``.part`` file, a per-read timeout and a minimum rate (a stalled or trickling server ends the attempt),
verification (the hash the server publishes for the file: Google Cloud Storage's ``x-goog-hash`` MD5 or
CRC32C, the Hugging Face hub's LFS SHA-256 or git blob SHA-1; a TF checkpoint's own CRC32Cs) and the one-time
conversion. Every result appears by an atomic rename, so an interrupted run never leaves a half-written file
where a complete one is expected.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UserError

HOME_ENV = "SENFORMER_HOME"
WEIGHTS_URL_ENV = "SENFORMER_WEIGHTS_URL"
BORZOI_URL_ENV = "SENFORMER_BORZOI_URL"
HUGGINGFACE_URL_ENV = "SENFORMER_HUGGINGFACE_URL"
GENOME_URL_ENV = "SENFORMER_GENOME_URL"
DEFAULT_WEIGHTS_URL = "https://storage.googleapis.com/dm-enformer/models/enformer/sonnet_weights"
# calico/borzoi's README ("Model Availability"): replicate r's heads at f<r>/model0_best.h5 (human) and
# f<r>/model1_best.h5 (mouse).
DEFAULT_BORZOI_URL = "https://storage.googleapis.com/seqnn-share/borzoi"
DEFAULT_HUGGINGFACE_URL = "https://huggingface.co"
DEFAULT_GENOME_URL = "https://hgdownload.soe.ucsc.edu/goldenPath"
DOWNLOAD_ATTEMPTS = 3  # a cut connection is resumed this many times within one call before giving up
TIMEOUT_S = 60  # connect and per-read timeout: a stalled server ends the attempt instead of hanging
# A server that trickles (a byte every 59 s passes any per-read timeout) ends the attempt too: fewer than
# MIN_RATE_BPS bytes a second, averaged over RATE_WINDOW_S seconds, is a stall.
MIN_RATE_BPS = 1024
RATE_WINDOW_S = 60.0
CHUNK_BYTES = 1 << 16
BORZOI_REPLICATES = 4  # calico trained four replicates on one split (test fold 3); borzoi-pytorch ports each
# A Hugging Face copy's weights file, in order of preference: safetensors holds no pickled code.
HUGGINGFACE_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")

CALICO_LICENCE = "calico/borzoi is Apache-2.0; its README states no other terms for the weights"
BORZOI_PYTORCH_LICENCE = "CC-BY-4.0 (the Hugging Face model card); borzoi-pytorch's code is Apache-2.0"
FLASHZOI_LICENCE = "MIT (the Hugging Face model card); borzoi-pytorch's code is Apache-2.0"


@dataclass(frozen=True)
class WeightsSource:
    """Weights known by name and where their publishers keep them; ``sources[0]`` is the default source.

    ``name`` is the canonical name (the cache folder's); the short names in :data:`WEIGHTS` point at the
    same entry. ``replicates`` names every replicate of the model (this one included), for an ensemble.
    """

    description: str
    sources: tuple[str, ...] = ("dm-enformer", "huggingface")
    checkpoint: str | None = None  # dm-enformer: <checkpoint>.index and <checkpoint>.data-00000-of-00001
    huggingface_repo: str | None = None
    calico_file: str | None = None  # calico: the .h5 under $SENFORMER_BORZOI_URL
    huggingface_format: str = "enformer-pytorch"  # the weights format of the Hugging Face copy
    name: str = ""
    replicates: tuple[str, ...] = ()
    licence: str = ""
    megabytes: int = 0  # the published weights file as its server lists it (0: not listed here)

    @property
    def files(self) -> tuple[str, ...]:
        return (f"{self.checkpoint}.index", f"{self.checkpoint}.data-00000-of-00001")


def _borzoi_registry() -> dict[str, WeightsSource]:
    """Borzoi's replicates (human and mouse heads) and Flashzoi's, by canonical and short names."""
    entries: dict[str, WeightsSource] = {}
    # short name: (canonical name of replicate r, calico's head file, licence, MB: the Hub lists 744 and 705;
    # Flashzoi's is its float32 parameters, 197,079,435 x 4 bytes)
    families = {
        "borzoi": ("borzoi-replicate-{r}", "model0_best.h5", BORZOI_PYTORCH_LICENCE, 744),
        "borzoi-mouse": ("borzoi-replicate-{r}-mouse", "model1_best.h5", BORZOI_PYTORCH_LICENCE, 705),
        "flashzoi": ("flashzoi-replicate-{r}", None, FLASHZOI_LICENCE, 788),
    }
    for short, (pattern, head_file, licence, size) in families.items():
        names = tuple(pattern.format(r=r) for r in range(BORZOI_REPLICATES))
        for replicate, name in enumerate(names):
            if short == "flashzoi":
                description = (f"Flashzoi replicate {replicate} (Hingerl et al. 2024), human and mouse heads, "
                               "Hugging Face johahi/" + name)
                sources, licences = ("huggingface",), licence
            else:
                head = "mouse" if short.endswith("mouse") else "human"
                description = (f"Borzoi replicate {replicate} (Linder et al. 2025), {head} head, calico's "
                               f"f{replicate}/{head_file}")
                sources, licences = ("calico", "huggingface"), f"calico: {CALICO_LICENCE}; Hugging Face copy: {licence}"
            entry = WeightsSource(
                description=description, sources=sources, huggingface_repo=f"johahi/{name}",
                calico_file=f"f{replicate}/{head_file}" if head_file else None, huggingface_format="borzoi-pytorch",
                name=name, replicates=names, licence=licences, megabytes=size,
            )
            entries[name] = entry
            entries[f"{short}:{replicate}"] = entry
            if replicate == 0:
                entries[short] = entry
    return entries


WEIGHTS: dict[str, WeightsSource] = {
    "enformer": WeightsSource(
        checkpoint="enformer-fine-tuned-human-1",
        description="DeepMind's published Enformer (Avsec et al. 2021), Sonnet checkpoint, 959 MB",
        huggingface_repo="EleutherAI/enformer-official-rough", name="enformer",
        licence="Apache-2.0 (deepmind-research)",
    ),
    **_borzoi_registry(),
}
"""Every known weights name (canonical and short) -> its entry; ``WEIGHTS[name].name`` is the canonical one."""

# The names `senformer download --help` and the errors list (each also takes :N for replicate N = 0-3).
SHORT_NAMES = {
    "enformer": "DeepMind's Enformer (196,608 bp, 896 bins of 128 bp), 959 MB",
    "borzoi": "Borzoi human head (524,288 bp, 16,352 bins of 32 bp), replicate 0, 744 MB; borzoi:N for N = 0-3",
    "borzoi-mouse": "Borzoi mouse head, replicate 0, 705 MB; borzoi-mouse:N for N = 0-3",
    "flashzoi": "Flashzoi (Borzoi, rotary attention), human and mouse heads, 788 MB; flashzoi:N for N = 0-3",
}

GENOMES: dict[str, str] = {
    "hg38": "UCSC hg38 (GRCh38) human genome",
    "mm10": "UCSC mm10 (GRCm38) mouse genome",
}

WEIGHTS_SOURCES = ("dm-enformer", "calico", "huggingface")


def replicates(name: str) -> list[str]:
    """The canonical names of every replicate of the model ``name`` names, in replicate order: ``borzoi``
    (or ``borzoi:2``, ``borzoi-replicate-2``) gives ``borzoi-replicate-0`` ... ``borzoi-replicate-3``. Each
    resolves like any name (:func:`resolve_weights`, :func:`load_model`); ``predict --ensemble`` averages them.
    A name with one model only (``enformer``), or no known name, is a :class:`UserError`."""
    entry = WEIGHTS.get(os.fspath(name))
    if entry is not None and len(entry.replicates) > 1:
        return list(entry.replicates)
    with_replicates = ", ".join(short for short in SHORT_NAMES if len(WEIGHTS[short].replicates) > 1)
    raise UserError(f"--ensemble averages several weights: {name!r} is one model; give --weights a comma-separated "
                    f"list of weights files or names, or a name with replicates ({with_replicates})")


# Locations ------------------------------------------------------------------------------------------
def home() -> Path:
    """The cache folder: ``$SENFORMER_HOME``, else the platform's user cache folder."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    import pooch

    return Path(pooch.os_cache("senformer"))


def weights_path(name: str) -> Path:
    """Where the native copy of the named weights lives (``config.json`` + ``model.safetensors``); a short
    name's folder is its canonical name's (``borzoi`` -> ``weights/borzoi-replicate-0``)."""
    entry = WEIGHTS.get(name)
    return home() / "weights" / (entry.name if entry is not None else name)


def genome_path(name: str) -> Path:
    """Where the bgzip FASTA of the named genome lives (its ``.fai`` and ``.gzi`` beside it)."""
    return home() / "genomes" / name / f"{name}.fa.gz"


def weights_url(name: str) -> str:
    """The folder URL of the named weights' checkpoint files."""
    return (os.environ.get(WEIGHTS_URL_ENV) or DEFAULT_WEIGHTS_URL).rstrip("/")


def borzoi_url() -> str:
    """The folder URL of calico's Borzoi ``.h5`` files (``f<replicate>/model<head>_best.h5``)."""
    return (os.environ.get(BORZOI_URL_ENV) or DEFAULT_BORZOI_URL).rstrip("/")


def huggingface_url() -> str:
    """The Hugging Face hub that serves ``<repository>/resolve/main/<file>``."""
    return (os.environ.get(HUGGINGFACE_URL_ENV) or os.environ.get("HF_ENDPOINT") or DEFAULT_HUGGINGFACE_URL).rstrip("/")


def genome_url(name: str) -> str:
    """The URL of UCSC's gzip FASTA of the named genome."""
    base = (os.environ.get(GENOME_URL_ENV) or DEFAULT_GENOME_URL).rstrip("/")
    return f"{base}/{name}/bigZips/{name}.fa.gz"


def known_weights() -> str:
    """The weights names, in one line for an error."""
    return (f"known weights: {', '.join(SHORT_NAMES)} (borzoi, borzoi-mouse and flashzoi take :N for replicate "
            "N = 0-3; or their Hugging Face names: borzoi-replicate-N[-mouse], flashzoi-replicate-N)")


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
        f"({known_weights()}); get published weights with `senformer download enformer` "
        "(or borzoi, flashzoi) and pass --weights enformer"
    )


def load_model(name_or_path: str | os.PathLike, overrides=None, strict: bool = True, **options):
    """:func:`senformer.weights.load_model` (every argument and the result are its) that also takes a known
    name (:data:`WEIGHTS`): ``"enformer"`` is DeepMind's model, ``"borzoi"``/``"borzoi:2"``/``"borzoi-mouse"``/
    ``"flashzoi"`` calico's and borzoi-pytorch's replicates, converted once into the cache
    (:func:`resolve_weights`; downloaded on first use). A local path of that name wins. This is ``senformer.load_model``: names are
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


OFFLINE_HINT = (f"offline, set ${WEIGHTS_URL_ENV} or ${GENOME_URL_ENV} to a reachable copy, or pass local files "
                "(`senformer convert` reads a copied checkpoint)")


@dataclass(frozen=True)
class PublishedHash:
    """The hash a server publishes for a file: ``kind`` is ``md5``/``crc32c`` (Google Cloud Storage's
    ``x-goog-hash``, base64 of the digest), ``sha256`` (a Hugging Face LFS file: ``X-Linked-Etag``, hex) or
    ``git-sha1`` (a Hugging Face file kept in git: its ETag is the git blob hash, hex)."""

    kind: str
    value: str
    header: str

    def of_file(self, path: Path) -> str:
        """The same hash of ``path``'s bytes, written as the server writes it."""
        if self.kind == "crc32c":
            import google_crc32c

            checksum = google_crc32c.Checksum()
            update = checksum.update
        else:
            checksum = hashlib.new("sha1" if self.kind == "git-sha1" else self.kind)
            update = checksum.update
            if self.kind == "git-sha1":
                update(b"blob %d\0" % path.stat().st_size)
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                update(chunk)
        if self.kind in ("md5", "crc32c"):
            return base64.b64encode(checksum.digest()).decode("ascii")
        return checksum.hexdigest()


def published_hash(responses) -> PublishedHash | None:
    """The file's hash from the headers of a HEAD request and the redirects before it (the Hugging Face hub
    names an LFS file's SHA-256 on its redirect to the CDN). MD5 is preferred over CRC32C (composite objects
    have only the latter); a Cloud Storage object stored gzip-encoded has hashes of its stored bytes, not of
    the ones sent, so it has none here."""
    for response in reversed(list(responses)):
        headers = response.headers
        goog = headers.get("x-goog-hash")
        if goog and headers.get("x-goog-stored-content-encoding", "identity") == "identity":
            found = dict(re.findall(r"(md5|crc32c)=([A-Za-z0-9+/=]+)", goog))
            for kind in ("md5", "crc32c"):
                if kind in found:
                    return PublishedHash(kind, found[kind], "x-goog-hash")
    for response in responses:
        headers = response.headers
        if "X-Repo-Commit" not in headers:
            continue
        linked = headers.get("X-Linked-Etag")
        etag = (linked or headers.get("ETag") or "").removeprefix("W/").strip('"')
        if re.fullmatch(r"[0-9a-f]{64}", etag):
            return PublishedHash("sha256", etag, "X-Linked-Etag" if linked else "ETag")
        if re.fullmatch(r"[0-9a-f]{40}", etag) and not linked:
            return PublishedHash("git-sha1", etag, "ETag")
    return None


def _remote_file(url: str, offline_hint: str = OFFLINE_HINT) -> tuple[int | None, PublishedHash | None]:
    """The file's size (None when the server does not say) and published hash, from a HEAD request."""
    import requests

    try:
        response = requests.head(url, timeout=TIMEOUT_S, allow_redirects=True, headers={"Accept-Encoding": "identity"})
    except requests.RequestException as error:
        raise UserError(f"cannot reach {url} ({_reason(error)}); {offline_hint}") from None
    if response.status_code >= 400:
        raise UserError(f"{url}: the server answered HTTP {response.status_code} {response.reason}")
    length = response.headers.get("Content-Length")
    return (int(length) if length and length.isdigit() else None), published_hash([*response.history, response])


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
                  window: float | None = None, require_hash: bool = False,
                  offline_hint: str = OFFLINE_HINT) -> Path:
    """Download ``url`` to ``destination``, resuming from ``destination.part`` after a cut connection.

    The bytes accumulate in ``destination.part``; an HTTP Range request continues it, both within this
    call (up to ``attempts`` tries) and in a later call. The file is renamed into place only when its size
    equals the server's ``Content-Length`` and its bytes have the hash the server publishes for it
    (:func:`published_hash`; a mismatch removes them and is refused). ``require_hash``: a server that
    publishes none is refused too. A server that ignores the Range header is caught by the size check and
    the download restarts from zero. An attempt ends when a read waits :data:`TIMEOUT_S` or the rate stays
    below ``min_rate`` bytes/s (:data:`MIN_RATE_BPS`) for ``window`` s (:data:`RATE_WINDOW_S`).
    """
    return _download(url, destination, progress, attempts, min_rate, window, require_hash, offline_hint)[0]


def _download(url: str, destination: str | os.PathLike, progress: bool, attempts: int, min_rate: float | None,
              window: float | None, require_hash: bool, offline_hint: str) -> tuple[Path, PublishedHash | None]:
    """:func:`download_file`, also returning the hash the file was verified against."""
    import requests
    import urllib3
    from tqdm.auto import tqdm

    min_rate = MIN_RATE_BPS if min_rate is None else min_rate
    window = RATE_WINDOW_S if window is None else window

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    expected, published = _remote_file(url, offline_hint)
    if published is None and require_hash:
        raise UserError(f"{url}: the server publishes no hash of the file (x-goog-hash or a Hugging Face ETag), "
                        "so the download cannot be verified; refused")
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

            if published is not None:
                if progress:
                    print(f"verifying {destination.name} ({published.kind} from the server's {published.header})",
                          file=sys.stderr)
                found = published.of_file(partial)
                if found != published.value:
                    partial.unlink()
                    raise UserError(f"{url}: refused the download, removed it: its {published.kind} is {found}, the "
                                    f"server's {published.header} says {published.value}; run the command again")
            return move_into_place(partial, destination), published
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


def _convert_into_cache(source: str | os.PathLike, name: str, format: str | None = None, overrides=None) -> Path:
    from .weights.loading import load_local_model
    from .weights.native import save_model

    destination = weights_path(name)
    built = _fresh_sibling(destination)
    try:
        # What `senformer convert SOURCE DESTINATION` does; strict, so every tensor is present with its shape.
        save_model(load_local_model(source, overrides, format=format), built)
        _install_folder(built, destination)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return destination


def download_weights(name: str, force: bool = False, progress: bool = True, source: str | None = None) -> Path:
    """Download, verify and convert the named weights into the cache; returns the native folder.

    ``source`` (default: the name's first, its original publisher) is ``dm-enformer`` (DeepMind's
    checkpoint, at ``$SENFORMER_WEIGHTS_URL`` when set), ``calico`` (calico's Keras ``.h5``, at
    ``$SENFORMER_BORZOI_URL``) or ``huggingface`` (the borzoi-pytorch / Flashzoi copies at
    ``$SENFORMER_HUGGINGFACE_URL``; Enformer's through ``huggingface_hub``). Without ``force`` an existing
    cached copy is returned as it is.
    """
    if name not in WEIGHTS:
        raise UserError(f"unknown weights {name!r} ({known_weights()})")
    entry = WEIGHTS[name]
    source = source or entry.sources[0]
    if source not in WEIGHTS_SOURCES:
        raise UserError(f"unknown weights source {source!r} (choose from {', '.join(WEIGHTS_SOURCES)})")
    if source not in entry.sources:
        raise UserError(f"{name} is not published by {source}: --source {' or '.join(entry.sources)}")
    destination = weights_path(name)
    with _locked():
        if destination.is_dir() and not force:
            return destination
        if source == "dm-enformer":
            return _download_checkpoint(entry, force, progress)
        if source == "huggingface" and entry.huggingface_format == "enformer-pytorch":
            return _download_huggingface(entry.name, entry, progress)
        return _download_published(entry, source, force, progress)


def _download_checkpoint(entry: WeightsSource, force: bool, progress: bool) -> Path:
    name, destination = entry.name, weights_path(entry.name)
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


def _published_files(entry: WeightsSource, source: str) -> tuple[list[tuple[str, str]], str]:
    """``([(url, file name)], mirror variable)`` of the files a Borzoi-family source publishes: calico's one
    ``.h5`` (its name says the head: ``model0`` human, ``model1`` mouse), or a Hugging Face repository's
    ``config.json`` and weights file (the first of :data:`HUGGINGFACE_WEIGHTS_FILES` it holds)."""
    if source == "calico":
        return [(f"{borzoi_url()}/{entry.calico_file}", Path(entry.calico_file).name)], BORZOI_URL_ENV
    import requests

    base = f"{huggingface_url()}/{entry.huggingface_repo}/resolve/main"
    for file_name in HUGGINGFACE_WEIGHTS_FILES:
        url = f"{base}/{file_name}"
        try:
            status = requests.head(url, timeout=TIMEOUT_S, allow_redirects=True).status_code
        except requests.RequestException as error:
            raise UserError(f"cannot reach {url} ({_reason(error)}); {_offline_hint(entry, HUGGINGFACE_URL_ENV)}") from None
        if status < 400:
            return [(f"{base}/config.json", "config.json"), (url, file_name)], HUGGINGFACE_URL_ENV
        if status != 404:
            raise UserError(f"{url}: the server answered HTTP {status}")
    raise UserError(f"{base}: the repository holds none of {', '.join(HUGGINGFACE_WEIGHTS_FILES)}")


def _offline_hint(entry: WeightsSource, variable: str) -> str:
    return (f"offline, set ${variable} to a reachable copy, or copy the files here and run `senformer convert "
            f"FILE_OR_FOLDER DESTINATION`, then pass --weights DESTINATION (the --weights {entry.name} of this machine)")


def _download_published(entry: WeightsSource, source: str, force: bool, progress: bool) -> Path:
    """calico's or the Hugging Face hub's files, each verified against the hash its server publishes, then
    converted once. The weights file must come with one from its publisher; a mirror (its variable set) that
    publishes none, or a config.json without one (JSON, parsed strictly), is used with a warning."""
    name = entry.name
    folder = home() / "downloads" / name
    if force:
        shutil.rmtree(folder, ignore_errors=True)
    files, variable = _published_files(entry, source)
    mirrored = bool(os.environ.get(variable) or (variable == HUGGINGFACE_URL_ENV and os.environ.get("HF_ENDPOINT")))
    verified: dict[str, str | None] = {}
    for url, file_name in files:
        target = folder / file_name
        if target.is_file():
            verified[file_name] = "verified in an earlier run"
            continue
        try:
            _, published = _download(url, target, progress, DOWNLOAD_ATTEMPTS, None, None,
                                     not mirrored and file_name != "config.json", _offline_hint(entry, variable))
        except DownloadInterrupted:
            raise  # the bytes received are kept for the next run
        except UserError:
            shutil.rmtree(folder, ignore_errors=True)  # a refused file leaves nothing of this download behind
            raise
        if published is None:
            warnings.warn(f"{url}: the server publishes no hash of the file, so it was not verified", stacklevel=2)
        verified[file_name] = None if published is None else f"{published.kind} {published.value}"
    if progress:
        print(f"converting to {weights_path(name)}", file=sys.stderr)
    converted_from = folder / files[0][1] if source == "calico" else folder
    # A name gives one model whatever its source: calico's outputs all 16,352 bins (16 cropped from each end;
    # --set target_length=6144 keeps the trained centre) and Borzoi builds its position basis from the input's
    # length, as baskerville does (borzoi-pytorch's copies say 4,096; the same at 524,288 bp). Flashzoi,
    # trained in borzoi-pytorch, keeps its 4,096.
    overrides = {"target_length": None, **({"positional_basis_length": None} if entry.calico_file else {})}
    _convert_into_cache(converted_from, name, format="keras-h5" if source == "calico" else entry.huggingface_format,
                        overrides=overrides)
    _write_provenance(name, {"source": source, "urls": [url for url, _ in files],
                             "bytes": {f: (folder / f).stat().st_size for _, f in files}, "hashes": verified})
    shutil.rmtree(folder, ignore_errors=True)  # the native copy holds every tensor
    return weights_path(name)


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
