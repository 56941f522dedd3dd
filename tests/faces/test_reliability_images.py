"""Decompression bombs are refused from the image header, before any pixel is decoded (issue 11)."""
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from benchmark.faces import images
from benchmark.faces.images import MAX_IMAGE_PIXELS, read_batch, read_rgb_uint8
from benchmark.errors import ConfigError, DataError


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(w, h) -> bytes:
    """A PNG signature and a valid IHDR (8-bit grey) declaring w x h, then a short IDAT and IEND."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * (w + 1))) + _png_chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("cv2.imdecode was called on an image over the limit")
    monkeypatch.setattr(images.cv2, "imdecode", refuse)


def test_a_20000x20000_png_is_refused_from_its_header(tmp_path, no_decoding):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20000, 20000))
    t0 = time.perf_counter()
    with pytest.raises(DataError) as err:
        read_rgb_uint8(path)
    assert time.perf_counter() - t0 < 1.0
    msg = str(err.value)
    assert str(path) in msg and "20000x20000" in msg and "400,000,000 pixels" in msg
    assert "FHBENCH_MAX_IMAGE_PIXELS" in msg and "\n" not in msg
    with pytest.raises(DataError, match="bomb.png is 20000x20000"):
        read_batch([path])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_real_encoded_images_just_over_the_limit(tmp_path, no_decoding, suffix):
    """Real files from OpenCV's encoder (zeros compress to a few hundred KB), 1 row over 40 MP."""
    w = 8000
    h = MAX_IMAGE_PIXELS // w + 1
    ok, buf = cv2.imencode(suffix, np.zeros((h, w), np.uint8))
    assert ok
    path = tmp_path / f"zeros{suffix}"
    buf.tofile(str(path))
    assert path.stat().st_size < 5_000_000
    with pytest.raises(DataError, match=f"zeros\\{suffix} is {w}x{h} "):
        read_rgb_uint8(path)


def test_the_limit_follows_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.full((112, 96, 3), 7, np.uint8))
    assert read_rgb_uint8(path).shape == (112, 96, 3)  # far under the default
    monkeypatch.setenv("FHBENCH_MAX_IMAGE_PIXELS", str(112 * 96))
    assert read_rgb_uint8(path)[0, 0].tolist() == [7, 7, 7]  # exactly at the limit: allowed
    monkeypatch.setenv("FHBENCH_MAX_IMAGE_PIXELS", str(112 * 96 - 1))
    with pytest.raises(DataError, match=r"face\.png is 96x112 \(10,752 pixels\), over the limit of 10,751"):
        read_rgb_uint8(path)
    monkeypatch.setenv("FHBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="FHBENCH_MAX_IMAGE_PIXELS must be a positive number of pixels, not 'lots'"):
        read_rgb_uint8(path)


def _bmp_header_only(w, h) -> bytes:
    """BITMAPFILEHEADER + BITMAPINFOHEADER (24-bit, uncompressed) declaring w x h, one pixel row."""
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 4 * w, 0, 0, 14 + len(info)) + info + b"\0" * (4 * w)


def test_other_formats_are_sized_by_pillow(tmp_path, no_decoding):
    path = tmp_path / "wide.bmp"
    path.write_bytes(_bmp_header_only(9000, 5000))
    with pytest.raises(DataError, match=r"wide\.bmp is 9000x5000 \(45,000,000 pixels\), over the limit"):
        read_rgb_uint8(path)


def test_over_pillows_own_limit_is_one_data_error(tmp_path, monkeypatch, no_decoding):
    monkeypatch.setenv("FHBENCH_MAX_IMAGE_PIXELS", str(10**12))
    path = tmp_path / "huge.bmp"
    path.write_bytes(_bmp_header_only(60000, 60000))
    with pytest.raises(DataError, match=r"huge\.bmp is too large to decode \(Image size \(3600000000 pixels\)"):
        read_rgb_uint8(path)


def test_a_jpeg_size_is_found_after_other_segments(tmp_path, monkeypatch):
    """EXIF-like APP1 and a comment before the frame header; progressive (SOF2) too."""
    ok, buf = cv2.imencode(".jpg", np.full((40, 50, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = buf.tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + b"Exif\0\0" + b"\xff" * 2994
    com = b"\xff\xfe" + struct.pack(">H", 2 + 5) + b"hello"
    path = tmp_path / "exif.jpg"
    path.write_bytes(data[:2] + app1 + com + data[2:])
    assert read_rgb_uint8(path).shape == (40, 50, 3)
    monkeypatch.setenv("FHBENCH_MAX_IMAGE_PIXELS", str(50 * 40 - 1))
    with pytest.raises(DataError, match=r"exif\.jpg is 50x40 "):
        read_rgb_uint8(path)


def test_corrupt_headers_are_still_reported_by_the_decoder(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(_png_header_only(50, 40)[:20])  # cut inside the IHDR
    with pytest.raises(DataError, match=r"broken\.png is corrupt or not an image"):
        read_rgb_uint8(path)


def test_a_decoder_registered_for_a_suffix_reads_those_files(tmp_path, monkeypatch):
    """Image decoders are registered by suffix (issue 12): one function adds a format."""
    from benchmark.faces import images

    monkeypatch.setitem(images.DECODERS, ".grey8", lambda path: np.full((4, 5, 3), 7, np.uint8))
    (tmp_path / "a.grey8").write_bytes(b"anything")
    batch = images.read_batch([tmp_path / "a.grey8"])
    assert batch.shape == (1, 3, 4, 5) and np.allclose(batch, 7 / 255)
    assert images.DECODERS[".raw"] is images.read_ar_raw
