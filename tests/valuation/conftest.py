from __future__ import annotations

import sys
from pathlib import Path

# reuse the hand-made raw rows of the feature tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))
