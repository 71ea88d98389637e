"""The README's Python quick example runs offline as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_quick_example_runs_as_written():
    text = README.read_text()
    section = text[text.index("## Quick example") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md quick example", "exec"), namespace)
    assert namespace["predicted_age"].shape == (10,)
    assert np.isfinite(namespace["predicted_age"]).all()
    probabilities = namespace["probabilities"]
    assert probabilities.shape == (10, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert list(namespace["clf"].classes_) == ["AD", "CN"]
