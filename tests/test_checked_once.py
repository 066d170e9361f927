"""``config.fields.checked_once``: pydantic runs a section's after-validators again whenever a
config holding the section's instance is validated (a sweep's points share their sections); a
check that passed an instance is not run on it again, and one that fails raises every time."""

import pytest
from pydantic import ValidationError, model_validator

from archsim.config.fields import Strict, checked_once


def test_a_passed_instance_is_not_checked_again_and_a_failing_one_raises_every_time():
    calls = []

    class Section(Strict):
        n: int

        @model_validator(mode="after")
        @checked_once
        def _positive(self):
            calls.append(self.n)
            if self.n <= 0:
                raise ValueError("n must be positive")
            return self

    class Config(Strict):
        section: Section
        label: str

    section = Section(n=3)
    assert calls == [3]
    for label in ("a", "b", "c"):  # validated with the instance: pydantic calls the check, which skips it
        assert Config.model_validate({"section": section, "label": label}).section is section
    assert calls == [3]
    assert Config.model_validate({"section": {"n": 3}, "label": "d"}).section is not section
    assert calls == [3, 3]  # a new instance is checked
    for _ in range(2):
        with pytest.raises(ValidationError, match="n must be positive"):
            Config.model_validate({"section": {"n": 0}, "label": "e"})
    assert calls == [3, 3, 0, 0]
