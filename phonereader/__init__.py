"""phonereader: reads handwritten phone numbers from canvas boxes, freehand lines and scanned forms."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root; the committed default model lives under it so a fresh clone serves at once.
ROOT = Path(__file__).resolve().parent.parent
