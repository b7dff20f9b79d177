"""Weights and genomes by name: the real download code against an HTTP server on 127.0.0.1.

The server serves DeepMind's own small checkpoint (``../shared/fixtures/official_tf_tiny``) under the
official file names, and a gzip FASTA written here; it honours Range requests and can cut a response
short, like a dropped connection. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import http.server
import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import SHARED

from senformer import hub
from senformer.cli import main
from senformer.data.genome import Genome, Interval
from senformer.errors import UserError
from senformer.weights import load_model
from senformer.weights.tensorbundle import TensorBundle
from senformer.weights.tf_checkpoint import read_tf_checkpoint

CHECKPOINT = hub.WEIGHTS["enformer"].checkpoint
INDEX_URL_PATH = f"/sonnet_weights/{CHECKPOINT}.index"
DATA_URL_PATH = f"/sonnet_weights/{CHECKPOINT}.data-00000-of-00001"
GENOME_URL_PATH = "/goldenPath/hg38/bigZips/hg38.fa.gz"
IN_FLIGHT_BYTES = 1 << 16  # at most this much of a cut response may be lost on the client's side
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"
SERVER_LIFETIME_S = 300  # the server shuts itself down after this even if a test never stops it


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of in-memory files, ``Range: bytes=N-`` answered with 206, optional cuts."""

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def _send_headers(self, headers: dict[str, str | list[str]]) -> None:
        """A list sends one header line per value (Cloud Storage sends x-goog-hash twice: crc32c, md5)."""
        for header, values in headers.items():
            for value in values if isinstance(values, list) else [values]:
                self.send_header(header, value)

    def _respond(self, send_body: bool) -> None:
        state: LoopbackServer = self.server.state
        requested_range = self.headers.get("Range")
        path = self.path.split("?", 1)[0]
        state.requests.append((self.command, path, requested_range))
        redirect = state.redirects.get(path)
        if redirect is not None:  # the Hugging Face hub: a 302 to its CDN, naming the LFS file's hash
            target, headers = redirect
            self.send_response(302)
            self.send_header("Location", target)
            self._send_headers(headers)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = state.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if requested_range and state.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested_range).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        # What a Hugging Face hub answers with (the file's hash and the commit it was resolved at), unless
        # headers[path] says what this server answers for the file instead (Cloud Storage's x-goog-hash).
        self._send_headers(state.headers.get(path, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                                    "X-Repo-Commit": HF_COMMIT}))
        self.end_headers()
        if not send_body:
            return
        cuts = state.cuts.get(self.path)
        stop = max(start, cuts.pop(0)) if cuts else len(data)
        self.wfile.write(data[start:stop])
        if stop < len(data):  # drop the connection mid-body, as a failing network would
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a daemon thread; ``cuts[path]`` lists the absolute byte positions at
    which successive GETs of ``path`` stop; ``headers[path]`` the headers sent with the file, ``redirects[path]``
    a ``(location, headers)`` a request for path is answered with (302); ``requests`` logs (method, path,
    Range header)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.headers: dict[str, dict[str, str]] = {}
        self.redirects: dict[str, tuple[str, dict[str, str]]] = {}
        self.cuts: dict[str, list[int]] = {}
        self.honour_range = True
        self.requests: list[tuple[str, str, str | None]] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(SERVER_LIFETIME_S, self.stop)
        self._watchdog.daemon = True
        self._stopped = False
        self._thread.start()
        self._watchdog.start()

    def gets(self, path: str) -> list[str | None]:
        """The Range header of every GET of ``path``, in order."""
        return [requested_range for method, requested, requested_range in self.requests if method == "GET" and requested == path]

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._watchdog.cancel()
            self.httpd.shutdown()
            self.httpd.server_close()


def _flip_byte(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x5A
    return bytes(damaged)


def _range_start(header: str) -> int:
    return int(re.fullmatch(r"bytes=(\d+)-", header).group(1))


def _files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def _refused_in_one_line(argv: list[str], fragment: str, home: Path, capsys) -> None:
    """The command exits 2 with one line on stderr naming ``fragment``, and leaves nothing in the cache."""
    assert main(argv) == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and fragment in error_lines[0]
    assert _files_under(home) == []


@pytest.fixture(scope="module")
def official_files() -> dict[str, bytes]:
    fixture = SHARED / "fixtures" / "official_tf_tiny"
    if not fixture.is_dir():
        pytest.skip(f"{fixture} is absent (the shared reference folder sits beside the clone in CI)")
    return {
        INDEX_URL_PATH: (fixture / "ckpt.index").read_bytes(),
        DATA_URL_PATH: (fixture / "ckpt.data-00000-of-00001").read_bytes(),
    }


@pytest.fixture(scope="module")
def chromosomes() -> dict[str, str]:
    rng = random.Random(7)
    return {"chr1": "".join(rng.choice("ACGTN") for _ in range(50_000)), "chr2": "".join(rng.choice("acgt") for _ in range(7_003))}


@pytest.fixture(scope="module")
def fasta_gz(chromosomes) -> bytes:
    """A plain gzip FASTA (60 bases a line), as UCSC ships hg38.fa.gz."""
    text = "".join(f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60)) for name, seq in chromosomes.items())
    return gzip.compress(text.encode(), mtime=0)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "senformer-home"
    monkeypatch.setenv(hub.HOME_ENV, str(folder))
    # Loopback only, whatever proxy the environment names.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return folder


@pytest.fixture
def server(home, official_files, fasta_gz, monkeypatch):
    running = LoopbackServer({**official_files, GENOME_URL_PATH: fasta_gz})
    monkeypatch.setenv(hub.WEIGHTS_URL_ENV, f"{running.url}/sonnet_weights")
    monkeypatch.setenv(hub.GENOME_URL_ENV, f"{running.url}/goldenPath")
    yield running
    running.stop()


def _assert_official_weights(path: Path) -> None:
    """The cached native copy holds exactly the checkpoint's tensors."""
    expected = read_tf_checkpoint(SHARED / "fixtures" / "official_tf_tiny" / "ckpt")
    model = load_model(path)
    assert model.config.dim == 384 and model.config.output_heads == {"human": 5313, "mouse": 1643}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name].to(tensor.dtype)), name


# Weights -----------------------------------------------------------------------------------------------
def test_first_use_downloads_verifies_and_converts_once(server, home, official_files):
    path = hub.resolve_weights("enformer", progress=False)
    assert path == home / "weights" / "enformer"
    _assert_official_weights(path)
    assert server.gets(DATA_URL_PATH) == [None] and server.gets(INDEX_URL_PATH) == [None]
    # Only the native copy and its provenance stay: the checkpoint is not needed again.
    assert {p.relative_to(home).as_posix() for p in _files_under(home)} == {
        "weights/enformer/config.json", "weights/enformer/model.safetensors", "weights/enformer.json"}
    provenance = (home / "weights" / "enformer.json").read_text()
    assert f'"{CHECKPOINT}.data-00000-of-00001": {len(official_files[DATA_URL_PATH])}' in provenance


def test_cut_connection_resumes_where_it_stopped(server, official_files):
    half = len(official_files[DATA_URL_PATH]) // 2
    server.cuts[DATA_URL_PATH] = [half]
    _assert_official_weights(hub.resolve_weights("enformer", progress=False))
    first, resumed = server.gets(DATA_URL_PATH)
    # The client keeps what it received before the cut (up to the bytes still in flight) and asks for the rest.
    assert first is None and half - IN_FLIGHT_BYTES <= _range_start(resumed) <= half


def test_interrupted_run_keeps_its_bytes_and_the_next_run_resumes(server, home, official_files):
    size = len(official_files[DATA_URL_PATH])
    cuts = [size // 5, 2 * size // 5, 3 * size // 5]
    server.cuts[DATA_URL_PATH] = list(cuts[: hub.DOWNLOAD_ATTEMPTS])
    with pytest.raises(hub.DownloadInterrupted, match="run the command again to resume") as raised:
        hub.download_weights("enformer", progress=False)
    assert "\n" not in str(raised.value)
    partial = home / "downloads" / "enformer" / f"{CHECKPOINT}.data-00000-of-00001.part"
    kept = partial.stat().st_size
    assert cuts[hub.DOWNLOAD_ATTEMPTS - 1] - IN_FLIGHT_BYTES <= kept <= cuts[hub.DOWNLOAD_ATTEMPTS - 1]
    assert not (home / "weights" / "enformer").exists()
    _assert_official_weights(hub.download_weights("enformer", progress=False))
    assert server.gets(DATA_URL_PATH)[-1] == f"bytes={kept}-"


def test_server_ignoring_range_restarts_from_zero(server, official_files):
    server.honour_range = False
    server.cuts[DATA_URL_PATH] = [len(official_files[DATA_URL_PATH]) // 3]
    _assert_official_weights(hub.resolve_weights("enformer", progress=False))
    assert len(server.gets(DATA_URL_PATH)) == 3  # cut, whole file appended (refused by size), whole file


def test_corrupted_byte_is_refused_in_one_line_and_nothing_is_cached(server, home, official_files, capsys):
    bundle_entries = TensorBundle(SHARED / "fixtures" / "official_tf_tiny" / "ckpt").entries.values()
    largest = max(bundle_entries, key=lambda entry: entry.size)
    damaged_at = largest.offset + largest.size // 2
    server.files[DATA_URL_PATH] = _flip_byte(official_files[DATA_URL_PATH], damaged_at)
    with pytest.raises(UserError, match=f"damaged: checksum mismatch for {re.escape(largest.key)}"):
        hub.resolve_weights("enformer", progress=False)
    assert _files_under(home) == []
    _refused_in_one_line(["download", "enformer", "--no-progress"], "checksum mismatch", home, capsys)


def test_cache_is_used_without_network(server, home):
    first = hub.resolve_weights("enformer", progress=False)
    server.stop()
    assert hub.resolve_weights("enformer", progress=False) == first
    assert hub.download_weights("enformer", progress=False) == first
    _assert_official_weights(first)
    with pytest.raises(UserError, match="cannot reach") as offline:
        hub.download_weights("enformer", force=True, progress=False)
    # the fixes an offline machine has: a mirror, or local files through senformer convert
    assert "$SENFORMER_WEIGHTS_URL" in str(offline.value) and "senformer convert" in str(offline.value)
    assert (first / "model.safetensors").is_file()  # a failed --force keeps the working copy
    # every weights option and senformer.load_model take the name, resolved from the cache at the edge;
    # below it, weights/ (and Enformer.from_pretrained through it) open paths only
    from senformer import Enformer, load_model
    from senformer.commands.common import weights_path
    from senformer.weights import load_model as load_path

    by_name = load_model("enformer", overrides={"attention": "bigbird"})
    assert by_name.config.attention == "bigbird"
    assert weights_path("enformer") == str(first) and weights_path("my/weights") == "my/weights"
    for name, tensor in Enformer.from_pretrained(first).state_dict().items():
        assert torch.equal(tensor, by_name.state_dict()[name]), name
    with pytest.raises(FileNotFoundError, match="no such weights file or directory: enformer"):
        load_path("enformer")


def test_download_command_prints_the_cached_path(server, home, capsys):
    assert main(["download", "enformer", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / "enformer")
    assert main(["download", "enformer", "--no-progress", "--force"]) == 0
    assert len(server.gets(DATA_URL_PATH)) == 2


def test_unknown_weights_name_says_how_to_get_weights(home, tmp_path):
    for missing in ["enformre", str(tmp_path / "no-such-folder")]:
        with pytest.raises(UserError, match=r"`senformer download enformer`") as raised:
            hub.resolve_weights(missing)
        assert "\n" not in str(raised.value)
    assert not home.exists()


def test_existing_paths_are_returned_unchanged(tmp_path):
    folder = tmp_path / "enformer"  # a local folder wins over the name
    folder.mkdir()
    assert hub.resolve_weights(folder) == folder
    prefix = tmp_path / "ckpt"
    Path(f"{prefix}.index").write_bytes(b"")
    assert hub.resolve_weights(str(prefix)) == prefix


def test_hugging_face_copy_is_a_second_source(home, tmp_path, monkeypatch):
    """snapshot_download against a loopback hub serving an enformer-pytorch folder of a small peer model."""
    pytest.importorskip("huggingface_hub")
    enformer_pytorch = pytest.importorskip("enformer_pytorch")
    torch.manual_seed(0)
    peer = enformer_pytorch.Enformer.from_hparams(
        dim=48, depth=2, heads=2, attn_dim_key=8, output_heads=dict(human=5, mouse=3), target_length=8, dim_divisible_by=8,
    )
    peer.save_pretrained(tmp_path / "peer", safe_serialization=False)
    repository = hub.WEIGHTS["enformer"].huggingface_repo
    stored = {path.name: path.read_bytes() for path in (tmp_path / "peer").iterdir()}
    listing = {"id": repository, "sha": HF_COMMIT, "siblings": [{"rfilename": name} for name in stored]}
    files = {f"/api/models/{repository}/revision/main": json.dumps(listing).encode()}
    files.update({f"/{repository}/resolve/{HF_COMMIT}/{name}": data for name, data in stored.items()})
    hub_server = LoopbackServer(files)
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        path = hub.download_weights("enformer", source="huggingface", progress=False)
    finally:
        hub_server.stop()
    assert hub_server.gets(f"/{repository}/resolve/{HF_COMMIT}/pytorch_model.bin")
    expected = load_model(tmp_path / "peer").state_dict()
    for name, tensor in load_model(path).state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert '"source": "huggingface"' in (home / "weights" / "enformer.json").read_text()
    assert not (home / "huggingface").exists()


# Borzoi and Flashzoi -----------------------------------------------------------------------------------
BORZOI_KERAS = SHARED / "fixtures" / "borzoi_keras" / "pred_small"  # calico's own .h5 files, 1.5 MB a head
CALICO_PATH = "/seqnn-share/borzoi/f{replicate}/model{head}_best.h5"
FLASHZOI_REPO = "johahi/flashzoi-replicate-0"


def _goog_hash(data: bytes) -> dict[str, list[str]]:
    """Cloud Storage's headers for an object: x-goog-hash twice, CRC32C and MD5 of its bytes, base64."""
    import google_crc32c

    crc32c = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return {"x-goog-hash": [f"crc32c={crc32c}", f"md5={md5}"]}


@pytest.fixture(scope="module")
def calico_files() -> dict[str, bytes]:
    if not BORZOI_KERAS.is_dir():
        pytest.skip(f"{BORZOI_KERAS} is absent (the shared reference folder sits beside the clone in CI)")
    return {CALICO_PATH.format(replicate=replicate, head=head): (BORZOI_KERAS / f"model{head}.h5").read_bytes()
            for replicate in (0, 1) for head in (0, 1)}


@pytest.fixture
def calico(home, calico_files, monkeypatch):
    """calico's bucket on the loopback as the default server (so each file must come with its hash)."""
    running = LoopbackServer(calico_files)
    running.headers = {path: _goog_hash(data) for path, data in calico_files.items()}
    monkeypatch.setattr(hub, "DEFAULT_BORZOI_URL", f"{running.url}/seqnn-share/borzoi")
    monkeypatch.delenv(hub.BORZOI_URL_ENV, raising=False)
    yield running
    running.stop()


def test_borzoi_by_name_is_verified_resumed_and_converted_once(calico, home, monkeypatch):
    from senformer import load_model as load_by_name

    path = CALICO_PATH.format(replicate=0, head=0)
    half = len(calico.files[path]) // 2
    calico.cuts[path] = [half]
    conversions = []
    convert = hub._convert_into_cache
    monkeypatch.setattr(hub, "_convert_into_cache", lambda *args, **kw: conversions.append(args[1]) or convert(*args, **kw))
    model = load_by_name("borzoi")
    expected = load_model(BORZOI_KERAS / "model0.h5")
    assert model.config.output_heads == {"human": 12} and model.config.target_length is None  # all 16,352-style bins
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected.state_dict()[name]), name
    first, resumed = calico.gets(path)
    assert first is None and half - IN_FLIGHT_BYTES <= _range_start(resumed) <= half
    # Every name of replicate 0 is one cache folder; from then on it is read without the network or converting.
    calico.stop()
    cached = home / "weights" / "borzoi-replicate-0"
    assert hub.resolve_weights("borzoi-replicate-0") == hub.resolve_weights("borzoi:0") == cached
    load_by_name("borzoi")
    assert conversions == ["borzoi-replicate-0"]
    from senformer.commands.common import weights_path  # every --weights option, as for enformer

    assert weights_path("borzoi") == weights_path("borzoi-replicate-0") == str(cached)
    provenance = json.loads((home / "weights" / "borzoi-replicate-0.json").read_text())
    assert provenance["source"] == "calico" and provenance["hashes"]["model0_best.h5"].startswith("md5 ")
    assert {p.relative_to(home).as_posix() for p in _files_under(home)} == {
        "weights/borzoi-replicate-0/config.json", "weights/borzoi-replicate-0/model.safetensors",
        "weights/borzoi-replicate-0.json"}


def test_a_wrong_published_hash_is_refused_and_nothing_is_cached(calico, home, capsys):
    path = CALICO_PATH.format(replicate=1, head=1)
    calico.headers[path] = _goog_hash(b"another object")
    with pytest.raises(UserError, match=r"refused the download, removed it: its md5 is \S+, the server's x-goog-hash"):
        hub.download_weights("borzoi-mouse:1", progress=False)
    assert _files_under(home) == []
    _refused_in_one_line(["download", "borzoi-replicate-1-mouse", "--no-progress"], "x-goog-hash", home, capsys)


def test_no_published_hash_is_refused_from_the_publisher_and_warned_from_a_mirror(calico, home, monkeypatch, capsys):
    path = CALICO_PATH.format(replicate=1, head=1)
    calico.headers[path] = {}
    with pytest.raises(UserError, match="publishes no hash of the file"):
        hub.download_weights("borzoi-mouse:1", progress=False)
    assert _files_under(home) == []
    monkeypatch.setenv(hub.BORZOI_URL_ENV, f"{calico.url}/seqnn-share/borzoi")  # a mirror the user chose
    with pytest.warns(UserWarning, match="publishes no hash of the file, so it was not verified"):
        assert main(["download", "borzoi-mouse:1", "--no-progress"]) == 0
    cached = home / "weights" / "borzoi-replicate-1-mouse"
    assert capsys.readouterr().out.strip() == str(cached)
    assert load_model(cached).config.output_heads == {"mouse": 6}  # calico's model1: the mouse head
    calico.stop()
    with pytest.raises(UserError, match="cannot reach") as offline:
        hub.download_weights("borzoi:1", progress=False)
    assert f"${hub.BORZOI_URL_ENV}" in str(offline.value) and "senformer convert" in str(offline.value)


def test_which_headers_are_a_published_hash(tmp_path):
    """A composite Cloud Storage object has only a CRC32C; one stored gzip-encoded has hashes of other bytes
    than those sent; a plain server's ETag (no Hugging Face commit beside it) promises nothing."""
    from requests.structures import CaseInsensitiveDict

    answer = lambda **headers: type("Answer", (), {"headers": CaseInsensitiveDict(headers)})()
    path = tmp_path / "object"
    path.write_bytes(b"ACGT" * 5000)
    crc32c = _goog_hash(path.read_bytes())["x-goog-hash"][0].removeprefix("crc32c=")
    composite = hub.published_hash([answer(**{"x-goog-hash": f"crc32c={crc32c}"})])
    assert (composite.kind, composite.of_file(path)) == ("crc32c", crc32c)
    assert hub.published_hash([answer(**{"x-goog-hash": f"crc32c={crc32c}", "x-goog-stored-content-encoding": "gzip"})]) is None
    assert hub.published_hash([answer(ETag=f'"{hashlib.sha256(path.read_bytes()).hexdigest()}"')]) is None


def _borzoi_pytorch_names(state: dict[str, torch.Tensor], flash: bool) -> dict[str, torch.Tensor]:
    """senformer names -> borzoi-pytorch's (the inverse of weights/borzoi_pytorch.py's table), Flashzoi's
    q, k and v packed into flash-attn's Wqkv, for a tiny model written as the Hugging Face copies are."""
    last = max(int(name.split(".")[1]) for name in state if name.startswith("conv_tower."))
    block = lambda peer: lambda leaf: f"{peer}.{leaf.replace('conv.', 'conv_layer.')}"
    rules = [
        (r"stem\.(.+)", block("conv_dna")),
        (rf"conv_tower\.{last}\.(.+)", block("unet1.1")),
        (r"conv_tower\.(\d+)\.(.+)", lambda i, leaf: block(f"res_tower.{2 * int(i)}")(leaf)),
        (r"transformer\.(\d+)\.attention_norm\.(.+)", "transformer.{0}.0.fn.0.{1}".format),
        (r"transformer\.(\d+)\.attention\.to_out\.(.+)",
         ("transformer.{0}.0.fn.1.mha.out_proj.{1}" if flash else "transformer.{0}.0.fn.1.to_out.{1}").format),
        (r"transformer\.(\d+)\.attention\.to_r_k\.(.+)", "transformer.{0}.0.fn.1.to_rel_k.{1}".format),
        (r"transformer\.(\d+)\.attention\.r_w_bias", "transformer.{0}.0.fn.1.rel_content_bias".format),
        (r"transformer\.(\d+)\.attention\.r_r_bias", "transformer.{0}.0.fn.1.rel_pos_bias".format),
        (r"transformer\.(\d+)\.attention\.(.+)", "transformer.{0}.0.fn.1.{1}".format),
        (r"transformer\.(\d+)\.feed_forward\.norm\.(.+)", "transformer.{0}.1.fn.0.{1}".format),
        (r"transformer\.(\d+)\.feed_forward\.linear_in\.(.+)", "transformer.{0}.1.fn.1.{1}".format),
        (r"transformer\.(\d+)\.feed_forward\.linear_out\.(.+)", "transformer.{0}.1.fn.4.{1}".format),
        (r"unet\.0\.skip\.(.+)", block("horizontal_conv1")), (r"unet\.1\.skip\.(.+)", block("horizontal_conv0")),
        (r"unet\.0\.upsample\.(.+)", block("upsampling_unet1.0")), (r"unet\.1\.upsample\.(.+)", block("upsampling_unet0.0")),
        (r"unet\.(\d)\.depthwise\.weight", lambda i: f"separable{1 - int(i)}.conv_layer.0.weight"),
        (r"unet\.(\d)\.pointwise\.(.+)", lambda i, leaf: f"separable{1 - int(i)}.conv_layer.1.{leaf}"),
        (r"final_pointwise\.(.+)", block("final_joined_convs.0")),
        (r"heads\.(\w+)\.(.+)", "{0}_head.{1}".format),
    ]
    peer: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        new = next(rename(*match.groups()) for pattern, rename in rules if (match := re.fullmatch(pattern, name)))
        if new.endswith("_head.weight"):
            tensor = tensor[:, :, None]  # the peer's heads are width-1 Conv1d
        elif new.endswith(("rel_content_bias", "rel_pos_bias")):
            tensor = tensor[None, :, None, :]
        peer[new] = tensor.contiguous()
    for prefix in sorted({name.rsplit(".to_q.", 1)[0] for name in peer if ".to_q." in name} if flash else []):
        for leaf in ("weight", "bias"):
            parts = [peer.pop(f"{prefix}.to_{part}.{leaf}") for part in "qkv"]
            peer[f"{prefix}.mha.Wqkv.{leaf}"] = torch.cat(parts)
    return peer


@pytest.fixture(scope="module")
def flashzoi_files() -> tuple[torch.nn.Module, dict[str, bytes]]:
    """A tiny Flashzoi (2 query heads sharing 1 key/value head of 128, rotary on 128) as its Hugging Face
    repository holds it: borzoi-pytorch's config.json and model.safetensors."""
    from safetensors.torch import save
    from helpers import randomize_
    from senformer.config import BorzoiConfig
    from senformer.model.borzoi import Borzoi

    torch.manual_seed(0)
    model = randomize_(Borzoi(BorzoiConfig(
        dim=256, depth=1, heads=2, key_size=128, kv_heads=1, attention="rotary", relative_positions=False,
        stem_channels=8, stem_width=5, num_conv_tower_blocks=3, conv_tower_start=8, conv_tower_divisible_by=4,
        final_channels=12, output_heads={"human": 3, "mouse": 2})), 0).eval()
    config = {"architectures": ["Borzoi"], "flashed": True, "heads": 2, "enable_mouse_head": True,
              "return_center_bins_only": True, "model_type": "borzoi"}
    return model, {"config.json": json.dumps(config).encode(),
                   "model.safetensors": save(_borzoi_pytorch_names(model.state_dict(), flash=True))}


def test_flashzoi_from_the_hugging_face_hub_is_checked_against_its_lfs_sha256(home, flashzoi_files, monkeypatch):
    model, stored = flashzoi_files
    resolve = f"/{FLASHZOI_REPO}/resolve/main"
    weights = stored["model.safetensors"]
    server = LoopbackServer({f"{resolve}/config.json": stored["config.json"], "/cdn/flashzoi-0": weights})
    blob = hashlib.sha1(b"blob %d\0" % len(stored["config.json"]) + stored["config.json"]).hexdigest()
    server.headers = {f"{resolve}/config.json": {"ETag": f'"{blob}"', "X-Repo-Commit": HF_COMMIT},
                      "/cdn/flashzoi-0": {"ETag": '"cdn-etag"'}}

    def lfs(sha256: str) -> tuple[str, dict[str, str]]:  # the hub's 302 to its CDN
        return f"{server.url}/cdn/flashzoi-0", {"X-Linked-Etag": f'"{sha256}"', "X-Repo-Commit": HF_COMMIT}

    server.redirects[f"{resolve}/model.safetensors"] = lfs(hashlib.sha256(b"other").hexdigest())
    monkeypatch.setattr(hub, "DEFAULT_HUGGINGFACE_URL", server.url)
    for variable in (hub.HUGGINGFACE_URL_ENV, "HF_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    try:
        with pytest.raises(UserError, match="its sha256 is .*, the server's X-Linked-Etag says"):
            hub.download_weights("flashzoi", progress=False)
        assert _files_under(home) == []
        server.redirects[f"{resolve}/model.safetensors"] = lfs(hashlib.sha256(weights).hexdigest())
        path = hub.resolve_weights("flashzoi:0", progress=False)
    finally:
        server.stop()
    assert path == home / "weights" / "flashzoi-replicate-0"
    loaded = load_model(path)
    assert (loaded.config.attention, loaded.config.kv_heads, loaded.config.target_length) == ("rotary", 1, None)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    hashes = json.loads((home / "weights" / "flashzoi-replicate-0.json").read_text())["hashes"]
    assert hashes == {"config.json": f"git-sha1 {blob}", "model.safetensors": f"sha256 {hashlib.sha256(weights).hexdigest()}"}


def test_borzoi_from_its_hugging_face_copy_is_the_model_calico_publishes(home, monkeypatch):
    """borzoi-pytorch's copy: a pickled pytorch_model.bin (the repository has no model.safetensors), read with
    weights_only; the name keeps calico's conventions (every bin, the basis from the input's length)."""
    import io
    from helpers import randomize_
    from senformer.config import BorzoiConfig
    from senformer.model.borzoi import Borzoi

    torch.manual_seed(1)
    model = randomize_(Borzoi(BorzoiConfig(
        dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5, num_conv_tower_blocks=3,
        conv_tower_start=8, conv_tower_divisible_by=4, final_channels=12, output_heads={"mouse": 2})), 1).eval()
    pickled = io.BytesIO()
    torch.save(_borzoi_pytorch_names(model.state_dict(), flash=False), pickled)
    config = json.dumps({"enable_mouse_head": True, "enable_human_head": False, "bins_to_return": 6, "heads": 2}).encode()
    resolve = "/johahi/borzoi-replicate-3-mouse/resolve/main"
    server = LoopbackServer({f"{resolve}/config.json": config, "/cdn/bin": pickled.getvalue()})
    server.redirects[f"{resolve}/pytorch_model.bin"] = (f"{server.url}/cdn/bin", {
        "X-Linked-Etag": f'"{hashlib.sha256(pickled.getvalue()).hexdigest()}"', "X-Repo-Commit": HF_COMMIT})
    monkeypatch.setenv(hub.HUGGINGFACE_URL_ENV, server.url)
    try:
        path = hub.download_weights("borzoi-mouse:3", source="huggingface", progress=False)
    finally:
        server.stop()
    assert [request[1] for request in server.requests[:2]] == [f"{resolve}/model.safetensors", f"{resolve}/pytorch_model.bin"]
    loaded = load_model(path)
    assert (loaded.config.target_length, loaded.config.positional_basis_length) == (None, None)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_replicates_and_short_names_share_the_cache_folders(home):
    assert hub.replicates("borzoi") == hub.replicates("borzoi:3") == [f"borzoi-replicate-{r}" for r in range(4)]
    assert hub.replicates("borzoi-mouse") == [f"borzoi-replicate-{r}-mouse" for r in range(4)]
    assert hub.replicates("flashzoi-replicate-2") == [f"flashzoi-replicate-{r}" for r in range(4)]
    with pytest.raises(UserError, match="'enformer' is one model"):
        hub.replicates("enformer")
    for short, canonical in [("borzoi", "borzoi-replicate-0"), ("borzoi:2", "borzoi-replicate-2"),
                             ("borzoi-mouse:3", "borzoi-replicate-3-mouse"), ("flashzoi:1", "flashzoi-replicate-1")]:
        assert hub.weights_path(short) == hub.weights_path(canonical) == home / "weights" / canonical
    with pytest.raises(UserError, match="flashzoi is not published by calico: --source huggingface"):
        hub.download_weights("flashzoi", source="calico")
    with pytest.raises(UserError, match=r"known weights: enformer, borzoi, borzoi-mouse, flashzoi \(.*:N"):
        hub.resolve_weights("borzoi:7")
    assert not home.exists()


# Genomes -----------------------------------------------------------------------------------------------
def test_genome_is_recompressed_as_bgzip_and_indexed_once(server, home, chromosomes):
    path = hub.resolve_genome("hg38", progress=False)
    assert path == home / "genomes" / "hg38" / "hg38.fa.gz"
    assert path.read_bytes()[:4] == b"\x1f\x8b\x08\x04"  # gzip with the extra field that marks BGZF blocks
    assert Path(f"{path}.fai").is_file() and Path(f"{path}.gzi").is_file()
    with Genome(path) as genome:
        assert genome.sizes == {name: len(seq) for name, seq in chromosomes.items()}
        assert genome.fetch(Interval("chr1", 31_000, 31_250)) == chromosomes["chr1"][31_000:31_250]
        assert genome.fetch(Interval("chr2", 6_990, 7_010)) == chromosomes["chr2"][6_990:].upper() + "N" * 7
    assert _files_under(home / "downloads") == []
    server.stop()
    assert hub.resolve_genome("hg38", progress=False) == path
    assert server.gets(GENOME_URL_PATH) == [None]
    # every FASTA option takes the name, resolved from the cache at the edge; data/ opens paths only
    from senformer.commands.common import genome_path

    assert genome_path("hg38") == str(path) and genome_path("my.fa") == "my.fa"
    with Genome(genome_path("hg38")) as genome:
        assert genome.path == path and genome.fetch(Interval("chr1", 0, 50)) == chromosomes["chr1"][:50].upper()
    with pytest.raises(FileNotFoundError, match="no such FASTA file: hg38"):
        Genome("hg38")


def test_damaged_genome_download_is_refused_and_removed(server, home, fasta_gz):
    server.files[GENOME_URL_PATH] = _flip_byte(fasta_gz, len(fasta_gz) // 2)
    with pytest.raises(UserError, match="damaged download") as raised:
        hub.resolve_genome("hg38", progress=False)
    assert "\n" not in str(raised.value)
    assert _files_under(home) == []


def test_unknown_genome_name_says_how_to_get_one(home):
    with pytest.raises(UserError, match=r"`senformer download hg38`"):
        hub.resolve_genome("hg19")


class _TricklingHandler(http.server.BaseHTTPRequestHandler):
    """Promises ``size`` bytes and sends one every ``interval`` s, ``count`` of them, then drops the line:
    each read returns well within any per-read timeout, so only a rate limit ends it."""

    size, interval, count = 10_000, 0.02, 150

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        self._head()
        for _ in range(self.count):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(self.interval)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.size))
        self.end_headers()


def test_a_trickling_server_ends_each_attempt_at_the_minimum_rate(tmp_path, monkeypatch, home):
    """One byte every 59 s passes a per-read timeout forever; scaled down: a byte every 20 ms against a
    minimum of 200 bytes/s over 0.5 s windows."""
    monkeypatch.setattr(hub, "MIN_RATE_BPS", 200)
    monkeypatch.setattr(hub, "RATE_WINDOW_S", 0.5)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TricklingHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/slow.bin"
        with pytest.raises(hub.DownloadInterrupted, match=r"slower than the minimum 200 bytes/s\); \d+ of 10,000 "
                                                          r"bytes are kept, run the command again to resume"):
            hub.download_file(url, tmp_path / "slow.bin", progress=False, attempts=2)
        kept = (tmp_path / "slow.bin.part").stat().st_size
        assert 0 < kept < 2 * _TricklingHandler.count and not (tmp_path / "slow.bin").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
