"""Create the bundled demo inputs under data/samples/ (nothing is downloaded):

* astronaut.png - scikit-image's bundled photo of Eileen Collins (public domain, NASA);
* speech_en.wav - English speech synthesised here with espeak-ng.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

TEXT = (
    "Hello, and welcome to the lip sync service. "
    "Send a video and a voice, and the mouth will follow the words. "
    "Pauses close the lips, and open vowels open them wide."
)


def make_portrait(dest: Path) -> Path:
    import cv2
    from skimage import data

    dest.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dest), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return dest


def make_speech(dest: Path, text: str = TEXT, voice: str = "en-us", speed: int = 150) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit(
            "espeak-ng is not installed: run `sudo apt-get install espeak-ng` "
            "(scripts/bootstrap.sh does this when run as root)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(dest), text], check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/samples"))
    args = parser.parse_args(argv)
    portrait = make_portrait(args.out / "astronaut.png")
    speech = make_speech(args.out / "speech_en.wav")
    print(f"{portrait}\n{speech}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
