"""A node decodes pictures (avatars, thumbnails of received photos) without
holding them at full size: a 24-megapixel phone photo costs a few megabytes,
not the ~100 MB it is as RGBA pixels. Measured as the peak resident memory of a
fresh process, since Pillow's allocations are invisible to tracemalloc."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

MEASURE = """
import io, resource, sys
from pathlib import Path
data = Path(sys.argv[2]).read_bytes()
from flamechat.services.media import make_thumbnail
from flamechat.services.profiles import normalise_avatar
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "avatar":
    assert normalise_avatar(data)
else:
    assert make_thumbnail(io.BytesIO(data))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6000x4000 JPEG, the size of a phone's photo (noise-free, so it stays small on disk)."""
    image = Image.linear_gradient("L").resize((6000, 4000)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("use", ["avatar", "thumbnail"])
def test_a_phone_photo_is_decoded_in_a_few_megabytes(photo: Path, use: str) -> None:
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, use, str(photo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    grown_mib = int(measured.stdout.strip())
    assert grown_mib < 30, f"decoding a 24-megapixel photo ({use}) grew the process by {grown_mib} MiB"
